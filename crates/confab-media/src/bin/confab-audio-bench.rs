//! Measures the audio processing on the built-in fixtures (echo, double talk, noise, CPU) and
//! prints the figures as one JSON object: run by `cargo xtask bench audio` (through
//! confab-bench, which prints the table and writes `target/bench/audio.json`).

fn main() {
    let figures = confab_media::audio_fixtures::measure_all();
    match serde_json::to_string(&figures) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("cannot encode the figures: {e}");
            std::process::exit(1);
        }
    }
}
