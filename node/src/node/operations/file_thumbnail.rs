//! `file_thumbnail`: a bounded thumbnail of an image file. Gate: the same as `read_file` (the
//! path resolves for reading beneath a root) and `max_size` in range. Decoding is CPU work, so
//! it runs on a blocking thread like the file executors.

use std::sync::Arc;

use remote_agents_ops::operation::FileThumbnail;
use remote_agents_ops::{FileThumbnailArgs, Outcome, ThumbnailFormat};

use super::{Call, Run, blocking, result};
use crate::node::Node;
use crate::policy::{Intent, Mode, Refusal, Resolved};
use crate::preview::{self, PreviewError};

/// The image file and the thumbnail asked of it.
pub(in crate::node) struct Thumbnail {
    target: Resolved,
    max_size: u32,
    format: Option<ThumbnailFormat>,
}

impl Run for FileThumbnail {
    type Checked = Thumbnail;

    fn check(node: &Node, mode: Mode, a: FileThumbnailArgs) -> Result<Thumbnail, Refusal> {
        let max_size = a.max_size().map_err(|reason| Refusal { reason })?;
        Ok(Thumbnail {
            target: node
                .policy()
                .resolve(mode, std::path::Path::new(&a.path), Intent::Read)?,
            max_size,
            format: a.format,
        })
    }

    async fn execute(_node: Arc<Node>, _call: Call, t: Thumbnail) -> Outcome {
        blocking(move || {
            match preview::thumbnail(&t.target, t.max_size, t.format) {
                // What was opened is a file the gate protects (a hard link to one): a refusal,
                // like the gate's own.
                Err(PreviewError::Refused(reason)) => Outcome::Refused { reason },
                other => result(other),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use remote_agents_ops::{Caller, Envelope, FileThumbnailResult, Request};

    use super::*;
    use crate::config::{NodeFlags, Settings};
    use crate::node::CallContext;

    fn node_in(dir: &std::path::Path) -> Arc<Node> {
        let flags = NodeFlags {
            name: Some("thumbnails".into()),
            data_dir: Some(dir.to_path_buf()),
            mode: Some("plan".into()),
            ..NodeFlags::default()
        };
        Node::open(Settings::resolve(&flags, &BTreeMap::<String, String>::new()).unwrap()).unwrap()
    }

    async fn thumbnail(node: &Arc<Node>, path: &std::path::Path, max_size: Option<u32>) -> Outcome {
        let envelope = Envelope {
            id: uuid::Uuid::new_v4().to_string(),
            caller: Caller::McpLocal,
            request: Request::FileThumbnail(FileThumbnailArgs {
                agent_id: None,
                path: path.display().to_string(),
                max_size,
                format: None,
            }),
            on_behalf_of_model: false,
            window_override: None,
        };
        node.handle_local(envelope, CallContext::default()).await
    }

    /// The gate is read_file's: an image inside the node's own data dir (its trust) is refused
    /// in every mode, one beneath a root is read in plan mode, and max_size out of range is
    /// refused naming it.
    #[tokio::test]
    async fn the_gate_refuses_protected_paths_and_sizes_out_of_range() {
        let data = tempfile::tempdir().unwrap();
        let node = node_in(data.path());
        let work = tempfile::tempdir().unwrap();
        let picture = image::RgbImage::from_pixel(64, 32, image::Rgb([10, 200, 30]));

        let inside_trust = data.path().join("secret.png");
        picture.save(&inside_trust).unwrap();
        let outcome = thumbnail(&node, &inside_trust, None).await;
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");

        let allowed = work.path().join("ok.png");
        picture.save(&allowed).unwrap();
        let outcome = thumbnail(&node, &allowed, Some(16)).await;
        let Outcome::Ok { result } = outcome else {
            panic!("{outcome:?}");
        };
        let result: FileThumbnailResult = serde_json::from_value(result).unwrap();
        assert_eq!((result.thumbnail_width, result.thumbnail_height), (16, 8));

        let outcome = thumbnail(&node, &allowed, Some(100_000)).await;
        assert!(
            matches!(&outcome, Outcome::Refused { reason } if reason.contains("max_size")),
            "{outcome:?}"
        );
    }
}
