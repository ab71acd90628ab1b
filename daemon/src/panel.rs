//! `remote-agents panel`: serves the browser panel (`panel/dist/`, embedded in the binary when
//! it is compiled, so building it needs no Node) on a loopback address, prints the page's URL
//! with the room in its fragment and opens the browser. The server only hands out the three
//! static files: the page itself joins the room over WebSocket as a send-only peer, and the
//! room token in the fragment never reaches this server or any other (browsers do not send the
//! fragment); the room key is derived from it in the page.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use remote_agents_node::config::{NodeFlags, ProcessEnv, Settings};

use crate::room::RoomArgs;

/// The built page, checked in by `cd panel && npm run build` (`npm run check-dist` fails when it
/// is stale).
const INDEX_HTML: &str = include_str!("../../panel/dist/index.html");
const PANEL_CSS: &str = include_str!("../../panel/dist/panel.css");
const PANEL_JS: &str = include_str!("../../panel/dist/panel.js");

/// The page may load only its own script and style and talk only to relays (`ws:`/`wss:`): no
/// third-party code runs next to the room key.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src ws: wss:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Flags of `panel`: the room (the same flags, `REMOTE_AGENTS_*` variables and config file as
/// `run`) and where to serve.
#[derive(Debug, Args, Clone)]
pub struct PanelArgs {
    #[command(flatten)]
    pub room: RoomArgs,
    /// Configuration file (TOML) to read the relay, room and token from.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The loopback address to serve on (port 0 picks a free one; the URL is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub bind: SocketAddr,
    /// Print the URL only; do not open a browser.
    #[arg(long)]
    pub no_open: bool,
    /// Serve the page's three files from this folder (a `panel/dist` just built with `npm run
    /// build`) instead of the copy built into the binary: for working on the page.
    #[arg(long, value_name = "DIR")]
    pub assets: Option<std::path::PathBuf>,
}

/// Where the page's files come from.
#[derive(Debug, Clone, Default)]
pub enum Assets {
    /// The copy compiled into the binary.
    #[default]
    Embedded,
    /// `index.html`, `panel.css` and `panel.js` read from a folder on each request.
    Folder(std::path::PathBuf),
}

impl Assets {
    /// The file's text, or why it cannot be served.
    fn text(&self, name: &'static str) -> Result<std::borrow::Cow<'static, str>, String> {
        match self {
            Assets::Embedded => Ok(std::borrow::Cow::Borrowed(match name {
                "index.html" => INDEX_HTML,
                "panel.css" => PANEL_CSS,
                _ => PANEL_JS,
            })),
            Assets::Folder(dir) => std::fs::read_to_string(dir.join(name))
                .map(std::borrow::Cow::Owned)
                .map_err(|e| format!("cannot read {}: {e}", dir.join(name).display())),
        }
    }
}

/// The room as the page reads it from its URL fragment (`panel/src/ui/fragment.ts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    pub relay: String,
    pub room: String,
    /// The room token, or `None` when an explicit encryption key names the room key.
    pub token: Option<String>,
    pub encryption_key: Option<String>,
    /// The relay's access key: a browser presents it as a WebSocket subprotocol (it cannot send
    /// the `Authorization` header `run` uses).
    pub relay_key: Option<String>,
}

impl Fragment {
    /// `#relay=…&room=…&token=…` (or `key=…` for an explicit encryption key, which then wins as it
    /// does for the node), each value percent-encoded.
    pub fn encode(&self) -> String {
        let mut text = format!(
            "#relay={}&room={}",
            percent_encode(&self.relay),
            percent_encode(&self.room)
        );
        if let Some(key) = &self.encryption_key {
            text.push_str(&format!("&key={}", percent_encode(key)));
        } else if let Some(token) = &self.token {
            text.push_str(&format!("&token={}", percent_encode(token)));
        }
        if let Some(relay_key) = &self.relay_key {
            text.push_str(&format!("&relay_key={}", percent_encode(relay_key)));
        }
        text
    }
}

/// Everything but the URL-unreserved characters as `%XX`, so that `URLSearchParams` in the page
/// reads back exactly the bytes given (a `+` in a token stays a `+`).
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The room from the flags, the environment and the config file, as `run` resolves them.
pub fn fragment(args: &PanelArgs) -> anyhow::Result<Fragment> {
    let flags = NodeFlags {
        relay: args.room.relay.clone(),
        room: args.room.room.clone(),
        token: args.room.token.clone(),
        encryption_key: args.room.encryption_key.clone(),
        relay_key: args.room.relay_key.clone(),
        config: args.config.clone(),
        ..NodeFlags::default()
    };
    let settings = Settings::resolve(&flags, &ProcessEnv)?;
    let relay = settings.relay.value.ok_or_else(|| missing("relay"))?;
    let room = settings.room.value.ok_or_else(|| missing("room"))?;
    let encryption_key = settings.encryption_key.value;
    let token = settings.token.value;
    if token.is_none() && encryption_key.is_none() {
        return Err(missing("token"));
    }
    Ok(Fragment {
        relay,
        room,
        token,
        encryption_key,
        relay_key: settings.relay_key.value,
    })
}

fn missing(setting: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "no {setting} configured: pass --{setting} or set REMOTE_AGENTS_{} (as for `remote-agents run`)",
        setting.to_uppercase()
    )
}

/// The routes: the page and its two assets; anything else is a 404 (there is no directory to
/// list).
pub fn router(assets: Assets) -> Router {
    let route = |name: &'static str, content_type: &'static str| {
        let assets = assets.clone();
        get(move || async move { asset(content_type, assets.text(name)) })
    };
    Router::new()
        .route("/", route("index.html", "text/html; charset=utf-8"))
        .route(
            "/index.html",
            route("index.html", "text/html; charset=utf-8"),
        )
        .route("/panel.css", route("panel.css", "text/css; charset=utf-8"))
        .route(
            "/panel.js",
            route("panel.js", "text/javascript; charset=utf-8"),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}

fn asset(
    content_type: &'static str,
    body: Result<std::borrow::Cow<'static, str>, String>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(error) => return (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Binds `addr` (loopback only) for the panel.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        anyhow::bail!(
            "the panel serves on loopback only, not {addr} (the URL it prints holds the room secret)"
        );
    }
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Serves the panel on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    assets: Assets,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router(assets))
        .with_graceful_shutdown(stop)
        .await
        .context("serving the panel")
}

/// `remote-agents panel`: resolve the room, bind, print the URL (stdout, one line), open the
/// browser unless `--no-open`, and serve until SIGINT or SIGTERM.
pub async fn run(args: PanelArgs) -> anyhow::Result<()> {
    let fragment = fragment(&args)?;
    let assets = match &args.assets {
        Some(dir) => {
            for name in ["index.html", "panel.css", "panel.js"] {
                if !dir.join(name).is_file() {
                    anyhow::bail!(
                        "--assets {}: no {name} there (build the page with `cd panel && npm run build`)",
                        dir.display()
                    );
                }
            }
            Assets::Folder(dir.clone())
        }
        None => Assets::Embedded,
    };
    let stop = remote_agents_node::service::terminated()?;
    let listener = bind(args.bind).await?;
    let url = format!("http://{}/{}", listener.local_addr()?, fragment.encode());
    println!("{url}");
    eprintln!(
        "remote-agents: the panel is served at the URL above (its fragment holds the room secret: share it as you would the token); Ctrl-C stops it"
    );
    if !args.no_open {
        open_browser(&url);
    }
    serve(listener, assets, stop).await
}

/// Opens `url` in the desktop's browser; failing that, the printed URL is the way in.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let spawned = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        eprintln!("remote-agents: cannot run {opener} ({error}): open the URL above yourself");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One real HTTP/1.1 GET over TCP: the status code, the headers block and the body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn serves_the_embedded_page_and_nothing_else() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Assets::Embedded, async {
            let _ = stopped.await;
        }));

        let (status, head, body) = get(addr, "/").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/html; charset=utf-8"),
            "{head}"
        );
        assert!(head.contains("content-security-policy: default-src 'none'"));
        assert!(body.contains(r#"<script src="panel.js">"#), "{body}");

        let (status, head, body) = get(addr, "/panel.js").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/javascript"), "{head}");
        assert_eq!(body, PANEL_JS);

        let (status, head, _) = get(addr, "/panel.css").await;
        assert_eq!(status, 200);
        assert!(head.contains("content-type: text/css"), "{head}");

        for path in [
            "/nope",
            "/dist/",
            "/../Cargo.toml",
            "/panel.js/",
            "/src/ui/main.ts",
        ] {
            assert_eq!(get(addr, path).await.0, 404, "{path}");
        }

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn serves_a_folder_given_with_assets_as_it_is_now() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("index.html", "<p>new</p>"),
            ("panel.css", "p{}"),
            ("panel.js", "1"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let assets = Assets::Folder(dir.path().to_path_buf());
        let server = tokio::spawn(serve(listener, assets, async {
            let _ = stopped.await;
        }));
        let (status, head, body) = get(addr, "/").await;
        assert_eq!((status, body.as_str()), (200, "<p>new</p>"));
        assert!(head.contains("content-security-policy: default-src 'none'"));
        // Read on each request: a rebuilt page shows on reload.
        std::fs::write(dir.path().join("panel.js"), "2").unwrap();
        assert_eq!(get(addr, "/panel.js").await.2, "2");
        std::fs::remove_file(dir.path().join("panel.css")).unwrap();
        let (status, _, body) = get(addr, "/panel.css").await;
        assert_eq!(status, 500);
        assert!(body.contains("cannot read"), "{body}");
        assert_eq!(get(addr, "/panel.js/").await.0, 404);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn refuses_a_non_loopback_address() {
        let error = bind("0.0.0.0:0".parse().unwrap()).await.unwrap_err();
        assert!(error.to_string().contains("loopback only"), "{error}");
    }

    #[test]
    fn the_fragment_carries_the_room_percent_encoded() {
        let fragment = Fragment {
            relay: "ws://127.0.0.1:4000".into(),
            room: "my room".into(),
            token: Some("a+b/c=&d".into()),
            encryption_key: None,
            relay_key: None,
        };
        assert_eq!(
            fragment.encode(),
            "#relay=ws%3A%2F%2F127.0.0.1%3A4000&room=my%20room&token=a%2Bb%2Fc%3D%26d"
        );
        let keyed = Fragment {
            encryption_key: Some("5a5a".into()),
            ..fragment
        };
        assert_eq!(
            keyed.encode(),
            "#relay=ws%3A%2F%2F127.0.0.1%3A4000&room=my%20room&key=5a5a"
        );
        let behind_a_relay_key = Fragment {
            relay_key: Some("k&y".into()),
            ..keyed
        };
        assert_eq!(
            behind_a_relay_key.encode(),
            "#relay=ws%3A%2F%2F127.0.0.1%3A4000&room=my%20room&key=5a5a&relay_key=k%26y"
        );
    }
}
