//! A real nginx for the tests that put the sidecar behind one: started from the
//! distribution's binary with a configuration of the test's, stopped when dropped.

use std::process::Stdio;
use std::time::Duration;

use crate::eventually;
use crate::sidecar::TempDir;

const HOW_TO_GET_NGINX: &str = "The decision-mode tests run a real nginx (auth_request). Install \
it from the distribution's packages (Debian: `apt-get install nginx-light`), as .ci/run does, or \
put an nginx binary on PATH.";

/// A running nginx on a free port.
#[derive(Debug)]
pub struct Nginx {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    child: tokio::process::Child,
    dir: TempDir,
}

/// The nginx binary: on PATH, or where Debian puts it.
fn binary() -> String {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nginx"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_default();
    let found = on_path.or_else(|| {
        let debian = std::path::PathBuf::from("/usr/sbin/nginx");
        debian.is_file().then_some(debian)
    });
    match found {
        Some(path) => path.to_string_lossy().into_owned(),
        None => panic!("no nginx found. {HOW_TO_GET_NGINX}"),
    }
}

impl Nginx {
    /// Starts nginx with `server_block` (the inside of a `server { }`, `{port}` replaced by
    /// the port it listens on) and waits until it accepts connections.
    pub async fn start(server_block: &str) -> Nginx {
        let port = crate::free_port();
        let dir = TempDir::new("iam-nginx");
        let path = dir.0.display().to_string();
        let server_block = server_block.replace("{port}", &port.to_string());
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {path}/nginx.pid;\n\
             error_log {path}/error.log info;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {path}/body;\n\
             proxy_temp_path {path}/proxy;\n  fastcgi_temp_path {path}/fastcgi;\n\
             uwsgi_temp_path {path}/uwsgi;\n  scgi_temp_path {path}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n{server_block}\n  }}\n}}\n"
        );
        let config_file = dir.0.join("nginx.conf");
        std::fs::write(&config_file, config).expect("nginx.conf");
        let child = tokio::process::Command::new(binary())
            .arg("-p")
            .arg(&dir.0)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-c")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start nginx: {error}. {HOW_TO_GET_NGINX}"));
        let nginx = Nginx {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        let address = format!("127.0.0.1:{port}");
        eventually(Duration::from_secs(10), "nginx accepts connections", || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.is_ok() }
        })
        .await;
        nginx
    }

    /// What nginx logged (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
