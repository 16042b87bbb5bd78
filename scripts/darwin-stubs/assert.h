/* Stand-in for the Apple SDK header (see TargetConditionals.h). */
#pragma once
#define assert(x) ((void)0)
