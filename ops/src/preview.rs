//! Previews of files: `file_thumbnail`, a bounded image of an image file that a model can look
//! at, with the bounds a request may ask for.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::operation::Summary;

/// The longest edge of a thumbnail when the request names none.
pub const DEFAULT_THUMBNAIL_SIZE: u32 = 512;
/// The longest edge a request may ask for: big enough to read a screenshot's text, small enough
/// that the encoded image stays a modest message (a 2048-pixel PNG is a few MiB at worst).
pub const MAX_THUMBNAIL_SIZE: u32 = 2048;

/// What a thumbnail is encoded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailFormat {
    /// Lossless, keeps transparency.
    Png,
    /// Lossy (quality 85), much smaller for photographs; transparency is dropped.
    Jpeg,
}

impl ThumbnailFormat {
    pub fn mime_type(self) -> &'static str {
        match self {
            ThumbnailFormat::Png => "image/png",
            ThumbnailFormat::Jpeg => "image/jpeg",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileThumbnailArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// The image file: absolute path, or relative to the home directory. PNG, JPEG, WebP and
    /// GIF (an animated GIF gives its first frame).
    pub path: String,
    /// The thumbnail's longest edge in pixels: default 512, at most 2048. A smaller image is
    /// returned at its own size, never enlarged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<u32>,
    /// The thumbnail's encoding; default png for images with transparency, jpeg otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ThumbnailFormat>,
}

impl FileThumbnailArgs {
    /// The longest edge asked for, checked against [`MAX_THUMBNAIL_SIZE`].
    pub fn max_size(&self) -> Result<u32, String> {
        match self.max_size {
            None => Ok(DEFAULT_THUMBNAIL_SIZE),
            Some(size) if (1..=MAX_THUMBNAIL_SIZE).contains(&size) => Ok(size),
            Some(size) => Err(format!(
                "max_size must be from 1 to {MAX_THUMBNAIL_SIZE} pixels, got {size}"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FileThumbnailResult {
    pub path: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// The format its content was decoded as: png, jpeg, webp or gif.
    pub format: String,
    /// The image's own width and height in pixels (as displayed: a JPEG's orientation applied).
    pub width: u32,
    pub height: u32,
    /// The thumbnail's width and height in pixels; the aspect ratio is kept.
    pub thumbnail_width: u32,
    pub thumbnail_height: u32,
    /// The thumbnail's encoding: image/png or image/jpeg.
    pub mime_type: String,
    /// The thumbnail, base64. Over MCP it comes as an image content block instead, and is left
    /// out here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub data: String,
}

impl Summary for FileThumbnailArgs {
    fn summary(&self, op: &str) -> String {
        format!(
            "{op} {} max_size={}",
            self.path,
            self.max_size.unwrap_or(DEFAULT_THUMBNAIL_SIZE)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_size_defaults_and_is_bounded() {
        let args = |max_size| FileThumbnailArgs {
            agent_id: None,
            path: "/a.png".into(),
            max_size,
            format: None,
        };
        assert_eq!(args(None).max_size(), Ok(DEFAULT_THUMBNAIL_SIZE));
        assert_eq!(args(Some(2048)).max_size(), Ok(2048));
        let too_big = args(Some(4096)).max_size().unwrap_err();
        assert!(
            too_big.contains("max_size") && too_big.contains("4096"),
            "{too_big}"
        );
        assert!(args(Some(0)).max_size().is_err());
    }

    #[test]
    fn unknown_fields_and_formats_are_rejected() {
        let parsed: Result<FileThumbnailArgs, _> =
            serde_json::from_str(r#"{"path": "/a.png", "size": 10}"#);
        assert!(parsed.is_err());
        let parsed: Result<FileThumbnailArgs, _> =
            serde_json::from_str(r#"{"path": "/a.png", "format": "bmp"}"#);
        assert!(parsed.is_err());
        let parsed: FileThumbnailArgs =
            serde_json::from_str(r#"{"path": "/a.png", "format": "jpeg"}"#).unwrap();
        assert_eq!(parsed.format, Some(ThumbnailFormat::Jpeg));
    }
}
