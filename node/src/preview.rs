//! The preview executor: `file_thumbnail` decodes an image file read through the gate (by
//! descriptor, like `fs::read_file`) and scales it down. Every file is treated as hostile: the
//! bytes read are capped, the dimensions a header claims are judged before any pixel buffer is
//! allocated, and the decoder runs under `image::Limits`, so a decompression bomb is refused
//! with an error instead of taking the node's memory.

use std::io::{Cursor, Read};

use base64::Engine;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use remote_agents_ops::{FileThumbnailResult, ThumbnailFormat};

use crate::policy::{OpenError, Resolved};

/// The largest file decoded: 64 MiB, beyond any ordinary photograph or screenshot.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024 * 1024;
/// The widest and tallest image decoded, whatever its format.
pub const MAX_SIDE: u32 = 16_384;
/// The most memory the decoded pixels (and the decoder's own buffers) may take: 256 MiB holds a
/// 48-megapixel RGB photograph or an 8192×8192 RGBA image.
pub const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;
/// The JPEG quality of thumbnails: small, and without visible artefacts at thumbnail sizes.
const JPEG_QUALITY: u8 = 85;
/// The formats this node decodes (the `image` crate's features the node enables).
const DECODED: &[ImageFormat] = &[
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::WebP,
    ImageFormat::Gif,
];

/// Why a file could not be previewed; every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// What was opened is a file the gate protects (e.g. a hard link to one).
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file ({kind})")]
    NotAFile { path: String, kind: &'static str },
    #[error("{path} is {size} bytes, more than the {limit} bytes (64 MiB) file_thumbnail decodes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path} is not an image file_thumbnail can read (PNG, JPEG, WebP, GIF): {detected}")]
    NotAnImage { path: String, detected: String },
    #[error(
        "{path} is a {format} image of {width}×{height} pixels ({bytes} bytes decoded), beyond \
         the limits of {MAX_SIDE} pixels a side and {MAX_DECODED_BYTES} bytes (256 MiB) \
         decoded; refused as a possible decompression bomb"
    )]
    TooManyPixels {
        path: String,
        format: &'static str,
        width: u32,
        height: u32,
        bytes: u64,
    },
    #[error("{path}: cannot decode it as {format}: {source}")]
    Decode {
        path: String,
        format: &'static str,
        #[source]
        source: image::ImageError,
    },
    #[error("{path}: cannot encode the thumbnail: {source}")]
    Encode {
        path: String,
        #[source]
        source: image::ImageError,
    },
}

/// A thumbnail of the image at `target`, its longest edge at most `max_size` pixels, encoded as
/// `format` (default: PNG when the image has transparency, JPEG otherwise).
pub fn thumbnail(
    target: &Resolved,
    max_size: u32,
    format: Option<ThumbnailFormat>,
) -> Result<FileThumbnailResult, PreviewError> {
    let path = target.absolute.display().to_string();
    let io = |source| PreviewError::Io {
        path: path.clone(),
        source,
    };
    let (file, meta) = target.open_read().map_err(|e| match e {
        OpenError::Refused(refusal) => PreviewError::Refused(refusal.reason),
        OpenError::Io(source) => io(source),
    })?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a special file"
        };
        return Err(PreviewError::NotAFile { path, kind });
    }
    let too_large = |size| PreviewError::TooLarge {
        path: path.clone(),
        size,
        limit: MAX_INPUT_BYTES,
    };
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_large(meta.len()));
    }
    // The file may grow after the stat: read one byte past the cap to notice.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let size = bytes.len() as u64;
    let image_format = detect(&path, &bytes)?;
    let image = decode(&path, &bytes, image_format)?;
    drop(bytes);

    let (width, height) = (image.width(), image.height());
    // Never enlarged: a small image is sent at its own size.
    let image = if width.max(height) > max_size {
        image.thumbnail(max_size, max_size)
    } else {
        image
    };
    let format = format.unwrap_or(if image.color().has_alpha() {
        ThumbnailFormat::Png
    } else {
        ThumbnailFormat::Jpeg
    });
    let encoded = encode(&image, format).map_err(|source| PreviewError::Encode {
        path: path.clone(),
        source,
    })?;
    Ok(FileThumbnailResult {
        path,
        size,
        format: format_name(image_format).to_string(),
        width,
        height,
        thumbnail_width: image.width(),
        thumbnail_height: image.height(),
        mime_type: format.mime_type().to_string(),
        data: base64::engine::general_purpose::STANDARD.encode(encoded),
    })
}

/// The image format of `bytes` from their content (never the file name), or what they look
/// like instead.
fn detect(path: &str, bytes: &[u8]) -> Result<ImageFormat, PreviewError> {
    let not_an_image = |detected: String| PreviewError::NotAnImage {
        path: path.to_string(),
        detected,
    };
    match image::guess_format(bytes) {
        Ok(format) if DECODED.contains(&format) => Ok(format),
        Ok(format) => Err(not_an_image(format!(
            "its content is {} ({}), which this node does not decode",
            format
                .extensions_str()
                .first()
                .copied()
                .unwrap_or("an image format")
                .to_uppercase(),
            format.to_mime_type()
        ))),
        Err(_) if bytes.is_empty() => Err(not_an_image("the file is empty".into())),
        Err(_) => Err(not_an_image(describe_content(bytes))),
    }
}

/// What content that is no image looks like, for the error: text, or its first bytes.
fn describe_content(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(512)];
    // A UTF-8 sequence cut at the 512th byte is still text.
    let text = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    if text && !head.contains(&0) {
        "its content looks like text".to_string()
    } else {
        let first: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "its content is unrecognised binary data starting with {}",
            first.join(" ")
        )
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        _ => "image",
    }
}

/// Decodes `bytes` (an animated GIF or WebP: its first frame) with the orientation a JPEG or
/// WebP records applied. The header's dimensions are judged before the pixels are allocated.
fn decode(path: &str, bytes: &[u8], format: ImageFormat) -> Result<DynamicImage, PreviewError> {
    let name = format_name(format);
    let failed = |source| PreviewError::Decode {
        path: path.to_string(),
        format: name,
        source,
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);

    // The header alone, without the side limits, so that a refusal can say what the file
    // claims; reading it allocates no pixels.
    let mut header_limits = limits.clone();
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    let mut header = ImageReader::with_format(Cursor::new(bytes), format);
    header.limits(header_limits);
    let header = header.into_decoder().map_err(failed)?;
    let (width, height) = header.dimensions();
    let decoded_bytes = header.total_bytes();
    drop(header);
    if width > MAX_SIDE || height > MAX_SIDE || decoded_bytes > MAX_DECODED_BYTES {
        return Err(PreviewError::TooManyPixels {
            path: path.to_string(),
            format: name,
            width,
            height,
            bytes: decoded_bytes,
        });
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(failed)?;
    // An orientation that cannot be read leaves the image as stored rather than failing it.
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(failed)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(image)
}

/// The thumbnail's bytes in `format`, 8 bits per channel (a 16-bit PNG would double its size
/// for nothing a viewer shows).
fn encode(image: &DynamicImage, format: ThumbnailFormat) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ThumbnailFormat::Png => {
            let eight_bit = if image.color().has_alpha() {
                DynamicImage::ImageRgba8(image.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(image.to_rgb8())
            };
            eight_bit.write_to(&mut out, ImageFormat::Png)?;
        }
        ThumbnailFormat::Jpeg => {
            let encoder =
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
            DynamicImage::ImageRgb8(image.to_rgb8()).write_with_encoder(encoder)?;
        }
    }
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::tests::setup;
    use crate::policy::{Intent, Mode, Policy};
    use std::path::Path;

    fn thumbnail_of(
        policy: &Policy,
        path: &Path,
        max_size: u32,
        format: Option<ThumbnailFormat>,
    ) -> Result<FileThumbnailResult, PreviewError> {
        let target = policy.resolve(Mode::Plan, path, Intent::Read).unwrap();
        thumbnail(&target, max_size, format)
    }

    /// A gradient, so that encoders have something to encode.
    fn picture(width: u32, height: u32, alpha: bool) -> DynamicImage {
        let rgba = image::RgbaImage::from_fn(width, height, |x, y| {
            image::Rgba([
                (x % 256) as u8,
                (y % 256) as u8,
                128,
                if alpha { 100 } else { 255 },
            ])
        });
        if alpha {
            DynamicImage::ImageRgba8(rgba)
        } else {
            DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).to_rgb8())
        }
    }

    fn decoded(result: &FileThumbnailResult) -> DynamicImage {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&result.data)
            .unwrap();
        image::load_from_memory(&bytes).unwrap()
    }

    #[test]
    fn png_jpeg_webp_and_gif_become_thumbnails_that_keep_the_aspect_ratio() {
        let (_t, root, policy) = setup();
        for (name, format) in [
            ("a.png", ImageFormat::Png),
            ("a.jpg", ImageFormat::Jpeg),
            ("a.webp", ImageFormat::WebP),
            ("a.gif", ImageFormat::Gif),
        ] {
            let path = root.join(name);
            let image = match format {
                // GIF and WebP (lossless) encoders take RGBA; an opaque one stays opaque.
                ImageFormat::Gif | ImageFormat::WebP => {
                    DynamicImage::ImageRgba8(picture(800, 400, false).to_rgba8())
                }
                _ => picture(800, 400, false),
            };
            image.save_with_format(&path, format).unwrap();
            let result = thumbnail_of(&policy, &path, 200, None).unwrap();
            assert_eq!(result.format, format_name(format), "{name}");
            assert_eq!((result.width, result.height), (800, 400), "{name}");
            assert_eq!(
                (result.thumbnail_width, result.thumbnail_height),
                (200, 100),
                "{name}"
            );
            let thumb = decoded(&result);
            assert_eq!((thumb.width(), thumb.height()), (200, 100), "{name}");
            assert_eq!(result.size, std::fs::metadata(&path).unwrap().len());
            // Opaque images come back as JPEG unless they are GIF/WebP with an alpha channel.
            let expected = if image.color().has_alpha() {
                "image/png"
            } else {
                "image/jpeg"
            };
            assert_eq!(result.mime_type, expected, "{name}");
            let guessed = image::guess_format(
                &base64::engine::general_purpose::STANDARD
                    .decode(&result.data)
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(guessed.to_mime_type(), expected, "{name}");
        }
    }

    #[test]
    fn transparency_gives_png_a_requested_format_wins_and_small_images_are_not_enlarged() {
        let (_t, root, policy) = setup();
        let path = root.join("icon.png");
        picture(48, 64, true).save(&path).unwrap();
        let result = thumbnail_of(&policy, &path, 512, None).unwrap();
        assert_eq!(result.mime_type, "image/png");
        assert_eq!((result.thumbnail_width, result.thumbnail_height), (48, 64));
        assert!(decoded(&result).color().has_alpha());

        let jpeg = thumbnail_of(&policy, &path, 32, Some(ThumbnailFormat::Jpeg)).unwrap();
        assert_eq!(jpeg.mime_type, "image/jpeg");
        assert_eq!((jpeg.thumbnail_width, jpeg.thumbnail_height), (24, 32));
        assert_eq!(
            image::guess_format(
                &base64::engine::general_purpose::STANDARD
                    .decode(&jpeg.data)
                    .unwrap()
            )
            .unwrap(),
            ImageFormat::Jpeg
        );
    }

    #[test]
    fn an_animated_gif_gives_its_first_frame() {
        use image::codecs::gif::GifEncoder;
        let (_t, root, policy) = setup();
        let path = root.join("anim.gif");
        let frame = |value: u8| {
            image::Frame::new(image::RgbaImage::from_pixel(
                30,
                20,
                image::Rgba([value, value, value, 255]),
            ))
        };
        {
            let file = std::fs::File::create(&path).unwrap();
            let mut encoder = GifEncoder::new(file);
            encoder
                .encode_frames([frame(250), frame(10), frame(10)])
                .unwrap();
        }
        let result = thumbnail_of(&policy, &path, 512, Some(ThumbnailFormat::Png)).unwrap();
        assert_eq!((result.width, result.height), (30, 20));
        let first = decoded(&result).to_rgba8();
        assert!(
            first.get_pixel(5, 5)[0] > 200,
            "{:?}",
            first.get_pixel(5, 5)
        );
    }

    /// A PNG whose header claims 100000×100000 pixels (40 GB decoded) is refused from its
    /// header: the message names the path and the claimed size, and nothing near that size is
    /// allocated (the test would abort or take minutes if it were).
    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let (_t, root, policy) = setup();
        let path = root.join("bomb.png");
        std::fs::write(&path, png_claiming(100_000, 100_000)).unwrap();
        let started = std::time::Instant::now();
        let error = thumbnail_of(&policy, &path, 512, None).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let text = error.to_string();
        assert!(
            matches!(error, PreviewError::TooManyPixels { .. }),
            "{text}"
        );
        assert!(
            text.contains("bomb.png") && text.contains("100000×100000"),
            "{text}"
        );

        // Within the side limit but beyond the memory one: 16000×16000 RGBA is 1 GB.
        std::fs::write(&path, png_claiming(16_000, 16_000)).unwrap();
        let error = thumbnail_of(&policy, &path, 512, None).unwrap_err();
        assert!(
            matches!(error, PreviewError::TooManyPixels { width: 16_000, .. }),
            "{error}"
        );
    }

    /// A PNG signature, an IHDR chunk claiming `width`×`height` RGBA pixels, one empty IDAT and
    /// IEND: a few dozen bytes.
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc_input = kind.to_vec();
            crc_input.extend_from_slice(data);
            out.extend_from_slice(&crc_input);
            out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA, deflate, no filter, no interlace
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(
            &mut png,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut png, b"IEND", &[]);
        png
    }

    /// The CRC-32 PNG chunks carry (ISO-HDLC), so the decoder judges the header rather than
    /// refusing a bad checksum.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn what_is_not_an_image_is_refused_with_what_it_is() {
        let (_t, root, policy) = setup();
        let text = root.join("notes.png");
        std::fs::write(&text, "just some notes, not a picture\n").unwrap();
        let error = thumbnail_of(&policy, &text, 512, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("notes.png") && error.contains("looks like text"),
            "{error}"
        );

        let elf = root.join("program");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01\x00\x00\x00\x00").unwrap();
        let error = thumbnail_of(&policy, &elf, 512, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("program") && error.contains("7f 45 4c 46"),
            "{error}"
        );

        let bmp = root.join("old.bmp");
        std::fs::write(&bmp, b"BM\x00\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00").unwrap();
        let error = thumbnail_of(&policy, &bmp, 512, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("old.bmp") && error.contains("BMP"),
            "{error}"
        );

        let empty = root.join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        let error = thumbnail_of(&policy, &empty, 512, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("empty"), "{error}");

        let error = thumbnail_of(&policy, &root, 512, None).unwrap_err();
        assert!(matches!(error, PreviewError::NotAFile { .. }), "{error}");
    }

    #[test]
    fn a_truncated_image_is_a_decode_error_naming_the_path() {
        let (_t, root, policy) = setup();
        let path = root.join("cut.png");
        let mut bytes = Vec::new();
        picture(64, 64, false)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, bytes).unwrap();
        let error = thumbnail_of(&policy, &path, 512, None).unwrap_err();
        assert!(matches!(error, PreviewError::Decode { .. }), "{error}");
        assert!(error.to_string().contains("cut.png"), "{error}");
    }

    #[test]
    fn a_file_over_the_input_cap_is_refused_before_it_is_read() {
        let (_t, root, policy) = setup();
        let path = root.join("huge.png");
        let file = std::fs::File::create(&path).unwrap();
        // Sparse: no disk is used for the hole.
        file.set_len(MAX_INPUT_BYTES + 1).unwrap();
        let error = thumbnail_of(&policy, &path, 512, None).unwrap_err();
        assert!(
            matches!(error, PreviewError::TooLarge { size, .. } if size == MAX_INPUT_BYTES + 1),
            "{error}"
        );
        assert!(error.to_string().contains("huge.png"));
    }
}
