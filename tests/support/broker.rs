//! A real Mosquitto for the tests: TLS 1.3 listener on loopback that requires client certificates,
//! identity from the certificate CN, the ACL from docs/protocol.md, persistence on. Certificates are
//! made at test time with openssl (a CA, the broker, the cloud service and one per device).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

pub struct Broker {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Makes `<name>.pem`/`<name>.key` signed by the test CA.
pub fn issue(dir: &Path, name: &str, cn: &str, ext: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext).expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

/// A client certificate for `cn` (a device's `site.device`, or `cloud`).
pub fn client_cert(dir: &Path, name: &str, cn: &str) {
    issue(
        dir,
        name,
        cn,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
}

pub const ACL: &str = "\
# The cloud service reads and writes every device's topics.
user cloud
topic readwrite gatehouse/d/#

# A device (username = its certificate CN, `site.device`) reaches only its own topics.
pattern read gatehouse/d/%u/allowlist
pattern read gatehouse/d/%u/allowlist/chunk
pattern write gatehouse/d/%u/allowlist/state
pattern write gatehouse/d/%u/events
pattern write gatehouse/d/%u/status
pattern write gatehouse/d/%u/heartbeat
pattern write gatehouse/d/%u/audit/checkpoint
pattern read gatehouse/d/%u/command
pattern write gatehouse/d/%u/command/result
pattern write gatehouse/d/%u/dsar/export
";

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Broker {
    /// Certificates, config and a running broker in `dir`.
    pub fn start(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("dir");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=gatehouse test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        issue(
            dir,
            "server",
            "localhost",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        );
        client_cert(dir, "cloud", "cloud");
        std::fs::write(dir.join("acl"), ACL).expect("acl");
        let port = free_port();
        let conf = format!(
            "per_listener_settings true\n\
             {user}\
             persistence true\n\
             persistence_location {dir}/\n\
             max_queued_messages 0\n\
             max_packet_size 2097152\n\
             log_dest stderr\n\
             log_type all\n\
             listener {port} 127.0.0.1\n\
             cafile {dir}/ca.pem\n\
             certfile {dir}/server.pem\n\
             keyfile {dir}/server.key\n\
             tls_version tlsv1.3\n\
             require_certificate true\n\
             use_identity_as_username true\n\
             allow_anonymous false\n\
             acl_file {dir}/acl\n",
            dir = dir.display(),
            // As root, mosquitto would switch to its own user, who cannot read the test's private folder.
            user = if is_root() { "user root\n" } else { "" },
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).expect("conf");
        let mut b = Broker {
            dir: dir.to_path_buf(),
            port,
            child: None,
        };
        b.resume();
        b
    }

    /// Starts the broker (again) on the same port, with the same persistent state.
    pub fn resume(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .expect("log");
        let child = Command::new("/usr/sbin/mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto (apt install mosquitto; scripts/setup.sh does)");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen: {}",
                std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker (SIGTERM: it saves its persistent state) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// Config lines for a device with certificate `name` (made here) and CN `site.device`.
    pub fn device_sync_config(&self, device: &str, trusted: &[(&str, &Path)]) -> String {
        let name = device.replace('/', "_");
        if !self.dir.join(format!("{name}.pem")).exists() {
            client_cert(&self.dir, &name, &device.replacen('/', ".", 1));
        }
        let keys: Vec<String> = trusted
            .iter()
            .map(|(id, p)| format!("\"{id}\" = \"{}\"", p.display()))
            .collect();
        format!(
            "\n[sync]\ndevice = \"{device}\"\ntrusted_keys = {{ {keys} }}\n\n[sync.mqtt]\n\
             broker = \"mqtts://localhost:{port}\"\nca = \"{d}/ca.pem\"\ncert = \"{d}/{name}.pem\"\nkey = \"{d}/{name}.key\"\n\
             heartbeat_s = 5\n{protocol}",
            // GATEHOUSE_TEST_MQTT=3.1.1 runs the cloud-link tests over MQTT 3.1.1 (scripts/test.sh does, after
            // the MQTT 5 run); the tests of MQTT 5's own behaviour (`mqtt5`) remove this line.
            protocol = match std::env::var("GATEHOUSE_TEST_MQTT").as_deref() {
                Ok("3.1.1") => "protocol = \"3.1.1\"\n",
                _ => "",
            },
            keys = keys.join(", "),
            port = self.port,
            d = self.dir.display(),
        )
    }

    /// An MQTT client with certificate `name` (`cloud`, or a device's), client id `id`.
    pub fn client(&self, name: &str, id: &str, clean: bool) -> Cloud {
        let read = |f: &str| std::fs::read(self.dir.join(f)).expect("cert file");
        let mut o = MqttOptions::new(id, "localhost", self.port);
        o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
            ca: read("ca.pem"),
            alpn: None,
            client_auth: Some((read(&format!("{name}.pem")), read(&format!("{name}.key")))),
        }));
        o.set_clean_session(clean);
        o.set_keep_alive(Duration::from_secs(5));
        o.set_max_packet_size(4 << 20, 4 << 20);
        o.set_inflight(200);
        let (client, mut conn) = Client::new(o, 1000);
        let got: Received = Arc::default();
        let acks: Arc<Mutex<Vec<Packet>>> = Arc::default();
        let (g, a) = (got.clone(), acks.clone());
        std::thread::spawn(move || {
            for ev in conn.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        g.lock().expect("lock").push((p.topic.clone(), p.payload.to_vec()))
                    }
                    Ok(Event::Incoming(p @ (Packet::SubAck(_) | Packet::ConnAck(_) | Packet::PubAck(_)))) => {
                        a.lock().expect("lock").push(p)
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        eprintln!("test mqtt client: {e}");
                        std::thread::sleep(Duration::from_millis(300))
                    }
                }
            }
        });
        Cloud { client, got, acks }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- mosquitto log (last 40 lines, newest first) ---\n{}",
                tail.join("\n")
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Messages received: (topic, payload).
pub type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A test-side MQTT client (the cloud, or an intruding device).
pub struct Cloud {
    pub client: Client,
    pub got: Received,
    pub acks: Arc<Mutex<Vec<Packet>>>,
}

impl Cloud {
    pub fn subscribe(&self, topic: &str) {
        self.client.subscribe(topic, QoS::AtLeastOnce).expect("subscribe");
    }

    pub fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .expect("publish");
    }

    /// SUBACKs received so far.
    pub fn subacks(&self) -> usize {
        self.acks
            .lock()
            .expect("lock")
            .iter()
            .filter(|p| matches!(p, Packet::SubAck(_)))
            .count()
    }

    /// Messages received on `topic` so far.
    pub fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Waits until `f` holds, up to `secs`.
    pub fn wait_for(&self, secs: u64, what: &str, mut f: impl FnMut(&Cloud) -> bool) {
        let start = Instant::now();
        while !f(self) {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out after {secs} s waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
