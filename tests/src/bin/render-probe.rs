//! Opens one DICOM file the way the gateway's viewer and PACS re-encoder do, and says what
//! each did: the render tests run it under an address-space limit, so a file that makes the
//! DICOM reader allocate without bound kills this probe, not the test.
//!
//! `render-probe FILE` prints `info: …`, `png: …` and `reencode: …`, each `ok` or the error.

fn main() {
    let Some(path) = std::env::args_os().nth(1).map(std::path::PathBuf::from) else {
        eprintln!("usage: render-probe FILE");
        std::process::exit(2);
    };
    let say = |what: &str, outcome: Result<(), String>| match outcome {
        Ok(()) => println!("{what}: ok"),
        Err(e) => println!("{what}: error: {e}"),
    };
    say(
        "info",
        gateway::render::info(&path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    say(
        "png",
        gateway::render::png(&path, 0, None)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    );
    say(
        "reencode",
        gateway::forward::reencode(&path, "1.2.840.10008.1.2.1", None).map(|_| ()),
    );
}
