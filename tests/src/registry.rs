//! A real container registry on loopback (Debian's `docker-registry`, the
//! CNCF Distribution server), standing for a region's Artifact Registry:
//! each test starts its own on a free port with its own storage folder, and
//! can stop and restart it on the same port and storage for fault tests.
//! `scripts/emulators.sh` installs the package.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// The server binary the Debian package installs.
const BINARY: &str = "docker-registry";

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running registry; stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    /// `127.0.0.1:port`: the registry host of image references.
    pub host: String,
    /// Where it keeps blobs and manifests.
    pub storage: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("registry folder");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {host}\n  secret: lifeboat-test\n",
                storage.display()
            ),
        )
        .expect("registry config");
        let mut registry = Self {
            host,
            storage,
            config,
            child: None,
            _dir: dir,
        };
        registry.restart();
        registry
    }

    /// Kills the server at once, as an outage would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and storage (after
    /// [`Registry::kill`]) and waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{BINARY} cannot be started ({e}): this test needs a container registry. \
                     Run the tests with scripts/test.sh, which installs it."
                )
            });
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if answers(&self.host) {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "{BINARY} did not answer on {} within {START_TIMEOUT:?}",
                self.host
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Registry {
    /// A client speaking plain HTTP to this registry.
    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![self.host.clone()]),
            ..ClientConfig::default()
        })
    }

    /// `host/path` of `path` (`acme/serving/ranker:7`) in this registry.
    pub fn image(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }

    /// Pushes an image to `path`: a config and one layer per entry of
    /// `sizes`, of bytes derived from `seed` (the same seed and size give
    /// the same layer). Returns its manifest digest.
    pub async fn push_image(&self, path: &str, seed: u8, sizes: &[usize]) -> String {
        let reference = reference(&self.image(path));
        let layers: Vec<ImageLayer> = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                let seed = seed.wrapping_add(u8::try_from(i % 256).unwrap_or(0));
                ImageLayer::new(
                    pattern(seed, *size),
                    IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
                    None,
                )
            })
            .collect();
        let config = Config::oci_v1(
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes(),
            None,
        );
        let client = self.client();
        client
            .push(&reference, &layers, config, &RegistryAuth::Anonymous, None)
            .await
            .expect("image pushed");
        client
            .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
            .await
            .expect("digest of the pushed image")
    }

    /// Every layer of the image at `path`, as pulled (and checked against
    /// its digest by the client), sorted: the client pulls layers at once
    /// and answers them in the order they finish.
    pub async fn pull_layers(&self, path: &str) -> Vec<Vec<u8>> {
        let pulled = self
            .client()
            .pull(
                &reference(&self.image(path)),
                &RegistryAuth::Anonymous,
                vec![IMAGE_LAYER_GZIP_MEDIA_TYPE],
            )
            .await
            .expect("pulled");
        let mut layers: Vec<Vec<u8>> = pulled.layers.into_iter().map(|l| l.data.to_vec()).collect();
        layers.sort();
        layers
    }

    /// The manifest digest of the image at `path`, if it is there.
    pub async fn digest(&self, path: &str) -> Option<String> {
        self.client()
            .fetch_manifest_digest(&reference(&self.image(path)), &RegistryAuth::Anonymous)
            .await
            .ok()
    }
}

fn reference(image: &str) -> Reference {
    image.parse().expect("an image reference")
}

/// `len` bytes derived from `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            u8::try_from(i % 251)
                .unwrap_or(0)
                .wrapping_mul(31)
                .wrapping_add(seed)
        })
        .collect()
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether the registry at `host` answers its API root with 200 (one
/// HTTP/1.0 request over a plain socket: no runtime needed).
fn answers(host: &str) -> bool {
    let ask = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(host)?;
        write!(stream, "GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"))
    };
    ask().unwrap_or(false)
}
