//! The DOM library (TypeScript 5.9) types `crypto.subtle.digest` as taking only buffers backed
//! by an `ArrayBuffer`; the shared frame codec (worker/src/frame.ts, typed against the
//! platform's own declarations) hands it any `Uint8Array`, which browsers accept. This overload
//! lets the page typecheck against the full DOM library without a cast in the shared code.

interface SubtleCrypto {
  digest(algorithm: AlgorithmIdentifier, data: ArrayBufferView<ArrayBufferLike>): Promise<ArrayBuffer>;
}
