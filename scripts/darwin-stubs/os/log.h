/* Stand-in for the Apple SDK header (see ../TargetConditionals.h), so the oslog crate's C wrapper
 * parses when type-checking for macOS on Linux. Nothing built with it is ever linked or run. */
#pragma once
typedef struct os_log_s *os_log_t;
typedef unsigned char os_log_type_t;
#define OS_LOG_DEFAULT ((os_log_t)0)
void arq_lockdown_stub_os_log(os_log_t log, int type, const char *format, ...);
#define os_log_with_type(log, type, ...) arq_lockdown_stub_os_log(log, type, __VA_ARGS__)
#define os_log_debug(log, ...) arq_lockdown_stub_os_log(log, 2, __VA_ARGS__)
#define os_log_info(log, ...) arq_lockdown_stub_os_log(log, 1, __VA_ARGS__)
#define os_log(log, ...) arq_lockdown_stub_os_log(log, 0, __VA_ARGS__)
#define os_log_error(log, ...) arq_lockdown_stub_os_log(log, 16, __VA_ARGS__)
#define os_log_fault(log, ...) arq_lockdown_stub_os_log(log, 17, __VA_ARGS__)
