//! Builds arq-lockdown's product archive, and reads one back.
//!
//! A macOS flat package is a XAR archive: a `Distribution` (what Installer shows and installs)
//! and one component package directory with `PackageInfo` (identifier, version, scripts), a
//! `Bom` (the bill of materials: every payload path with its mode and owner), `Payload` (a
//! gzip'd cpio of the files) and `Scripts` (a gzip'd cpio of preinstall/postinstall). The writing
//! is embala-pkg's (a working BOM writer; fixed timestamps make the output reproducible); the
//! reading is apple-flat-package's, an independent implementation, so `inspect` checks the build.
//!
//!   build-pkg build --binary PATH --version V --out FILE [--stand-in]
//!   build-pkg inspect FILE          (prints identifier, version, scripts, and every payload entry)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use apple_flat_package::PkgReader;
use apple_flat_package::package_info::Script;
use embala_pkg::{FileSpec, PkgSpec};

/// Package identifier, LaunchAgent label, preference domain: one reverse-DNS name.
const IDENTIFIER: &str = "org.arq-lockdown";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build(&args[1..]),
        Some("inspect") if args.len() == 2 => inspect(Path::new(&args[1])),
        _ => Err("usage: build-pkg build --binary PATH --version V --out FILE [--stand-in] | inspect FILE".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("build-pkg: {message}");
            ExitCode::FAILURE
        }
    }
}

fn build(args: &[String]) -> Result<(), String> {
    let value = |flag: &str| -> Result<String, String> {
        let at = args
            .iter()
            .position(|a| a == flag)
            .ok_or(format!("{flag} is required"))?;
        args.get(at + 1)
            .cloned()
            .ok_or(format!("{flag} needs a value"))
    };
    let binary = PathBuf::from(value("--binary")?);
    let version = value("--version")?;
    let out = PathBuf::from(value("--out")?);
    let stand_in = args.iter().any(|a| a == "--stand-in");
    // packaging/build-pkg → the project root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let file = |src: PathBuf, dest: &str, mode: u32| FileSpec {
        src,
        dest: dest.to_owned(),
        mode: Some(mode),
    };
    let spec = PkgSpec {
        name: "arq-lockdown".into(),
        display_name: if stand_in {
            "arq-lockdown (STRUCTURE TEST: Linux stand-in binary, not installable)".into()
        } else {
            "arq-lockdown".into()
        },
        identifier: IDENTIFIER.into(),
        version,
        install_location: "/".into(),
        enable_user_home: false,
        files: vec![
            file(binary, "usr/local/bin/arq-lockdown", 0o755),
            file(
                root.join("packaging/uninstall"),
                "usr/local/bin/arq-lockdown-uninstall",
                0o755,
            ),
            file(
                root.join(format!("launchd/{IDENTIFIER}.plist")),
                &format!("Library/LaunchAgents/{IDENTIFIER}.plist"),
                0o644,
            ),
        ],
        directories: Vec::new(),
        scripts: Some(root.join("packaging/scripts")),
    };
    embala_pkg::build(&spec, &out).map_err(|e| format!("building {}: {e}", out.display()))
}

fn inspect(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut reader =
        PkgReader::new(file).map_err(|e| format!("{}: not a flat package: {e}", path.display()))?;
    println!("flavor: {:?}", reader.flavor());
    let components = reader.component_packages().map_err(|e| e.to_string())?;
    for component in components {
        let info = component
            .package_info()
            .ok_or("a component has no PackageInfo")?;
        println!(
            "component: {} {} install-location {}",
            info.identifier,
            info.version,
            info.install_location.as_deref().unwrap_or("?")
        );
        for script in &info.scripts.scripts {
            match script {
                Script::PreInstall(s) => println!("script: preinstall {}", s.file),
                Script::PostInstall(s) => println!("script: postinstall {}", s.file),
            }
        }
        println!("bom: {} bytes", component.bom().map_or(0, <[u8]>::len));
        let mut payload = component
            .payload_reader()
            .map_err(|e| e.to_string())?
            .ok_or("no Payload")?;
        while let Some(entry) = payload.read_next().map_err(|e| e.to_string())? {
            println!(
                "payload: {:o} {}:{} {}",
                entry.mode(),
                entry.uid(),
                entry.gid(),
                entry.name()
            );
        }
    }
    Ok(())
}
