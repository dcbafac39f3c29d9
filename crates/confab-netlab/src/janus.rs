//! A real Janus (the Debian package's `janus`) for tests and benchmarks: only the VideoRoom
//! plugin and the WebSocket transport, on a free port on 127.0.0.1, its configuration in a
//! directory of its own; stopped and cleaned up on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIBS: &str = "/usr/lib/x86_64-linux-gnu/janus";

#[derive(Debug, thiserror::Error)]
pub enum JanusError {
    #[error("`janus` is missing (cargo xtask test installs the janus package)")]
    Missing,
    #[error("janus: {0}")]
    Io(#[from] std::io::Error),
    #[error("janus did not open its WebSocket port within 10 s (its log: {0})")]
    NotListening(String),
}

/// A running Janus.
pub struct Janus {
    child: Child,
    dir: PathBuf,
    port: u16,
    admin_key: String,
}

impl Janus {
    /// Starts Janus; returns once its WebSocket API accepts connections.
    pub fn start() -> Result<Janus, JanusError> {
        if !std::path::Path::new("/usr/bin/janus").exists() {
            return Err(JanusError::Missing);
        }
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("confab-janus-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // Every plugin and transport but the two we use is left out: faster start, less to
        // go wrong.
        let plugins = [
            "audiobridge",
            "duktape",
            "echotest",
            "lua",
            "nosip",
            "recordplay",
            "sip",
            "streaming",
            "textroom",
            "videocall",
            "voicemail",
        ]
        .map(|p| format!("libjanus_{p}.so"))
        .join(",");
        let transports = ["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"]
            .map(|p| format!("libjanus_{p}.so"))
            .join(",");
        std::fs::write(
            dir.join("janus.jcfg"),
            format!(
                "general: {{\n configs_folder = \"{d}\"\n plugins_folder = \"{LIBS}/plugins\"\n \
                 transports_folder = \"{LIBS}/transports\"\n events_folder = \"{LIBS}/events\"\n \
                 loggers_folder = \"{LIBS}/loggers\"\n debug_level = 3\n}}\n\
                 media: {{\n rtp_port_range = \"20000-60000\"\n}}\n\
                 nat: {{\n ice_ignore_list = \"vmnet\"\n}}\n\
                 plugins: {{\n disable = \"{plugins}\"\n}}\n\
                 transports: {{\n disable = \"{transports}\"\n}}\n\
                 loggers: {{\n disable = \"libjanus_jsonlog.so\"\n}}\n\
                 events: {{\n broadcast = false\n}}\n",
                d = dir.display()
            ),
        )?;
        std::fs::write(
            dir.join("janus.transport.websockets.jcfg"),
            format!(
                "general: {{\n json = \"compact\"\n ws = true\n ws_port = {port}\n \
                 ws_ip = \"127.0.0.1\"\n wss = false\n}}\nadmin: {{\n admin_ws = false\n}}\n"
            ),
        )?;
        // As Confab's README asks: only who knows the admin key (the signaling server) makes
        // rooms.
        let admin_key = format!("confab-admin-{}-{port}", std::process::id());
        std::fs::write(
            dir.join("janus.plugin.videoroom.jcfg"),
            format!("general: {{\n admin_key = \"{admin_key}\"\n}}\n"),
        )?;
        let log = std::fs::File::create(dir.join("janus.log"))?;
        let child = Command::new("janus")
            .arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .args(["--disable-colors", "--debug-timestamps"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let janus = Janus {
            child,
            dir,
            port,
            admin_key,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(JanusError::NotListening(
                    janus.dir.join("janus.log").display().to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(janus)
    }

    /// The address `confab-signal --sfu` takes.
    /// The VideoRoom plugin's `admin_key` (`confab-signal --sfu-admin-key`).
    pub fn admin_key(&self) -> &str {
        &self.admin_key
    }

    /// `confab-signal`'s arguments for this Janus: `--sfu URL --sfu-admin-key KEY`.
    pub fn signal_args(&self) -> [String; 4] {
        [
            "--sfu".into(),
            self.url(),
            "--sfu-admin-key".into(),
            self.admin_key.clone(),
        ]
    }

    /// An in-process server's SFU settings for this Janus: calls through it in rooms of
    /// more than `above` people.
    pub fn sfu(&self, secret: &str, above: u32) -> confab_rooms::Sfu {
        confab_rooms::Sfu {
            url: self.url(),
            secret: secret.into(),
            above,
            admin_key: Some(self.admin_key.clone()),
        }
    }

    pub fn url(&self) -> String {
        format!("janus+ws://127.0.0.1:{}", self.port)
    }

    /// Janus's log so far (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default()
    }

    /// Janus's process id (for CPU figures).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
