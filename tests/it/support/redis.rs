//! A real `redis-server` (Debian's package; scripts/test.sh installs it) for the tests
//! of state shared between replicas: on a free port, without persistence, stopped by
//! PID when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of its own, on a free port, with no persistence; killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> RedisServer {
        let found = Command::new("sh")
            .args(["-c", "command -v redis-server"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "redis-server is not on PATH: scripts/test.sh installs it (apt-get install -y redis-server)"
        );
        let args: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        // Redis needs a real port: take a free one from the kernel, release it, and try
        // again with another if something else took it in between.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut server = RedisServer {
                child: spawn_redis(port, &args),
                port,
                args: args.clone(),
            };
            if server.wait_answering() {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The URL the test itself uses, with the password if the server has one.
    pub fn admin_url(&self) -> String {
        match self.args.iter().position(|a| a == "--requirepass") {
            Some(i) => format!("redis://:{}@127.0.0.1:{}/0", self.args[i + 1], self.port),
            None => self.url(),
        }
    }

    /// Polls PING until it answers; false if the server exited (port taken).
    fn wait_answering(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if self.try_cmd(&["PING"]).is_ok() {
                return true;
            }
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn try_cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.admin_url())?;
        let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut con)
    }

    pub fn int(&self, args: &[&str]) -> i64 {
        match self.try_cmd(args).unwrap() {
            redis::Value::Int(n) => n,
            other => panic!("{args:?} answered {other:?}"),
        }
    }

    pub fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.admin_url()).unwrap();
        let mut con = client.get_connection().unwrap();
        redis::cmd("KEYS").arg("*").query(&mut con).unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new server on the same port (the gateways know only that address).
    pub fn restart(&mut self) {
        self.child = spawn_redis(self.port, &self.args);
        assert!(self.wait_answering(), "redis-server restarted on its port");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_redis(port: u16, extra: &[String]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(["--dir", &std::env::temp_dir().display().to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}
