//! The Noise handshake `Noise_IKpsk2_25519_AESGCM_SHA256` (Noise revision 34) in both roles, as
//! the Rust nodes run it with `snow`: X25519, AES-256-GCM with Noise's nonce (32 zero bits, then
//! the 64-bit counter big-endian), SHA-256 and its HMAC-based HKDF. Only this pattern is built:
//!
//! ```text
//! IKpsk2:
//!   <- s
//!   ...
//!   -> e, es, s, ss
//!   <- e, ee, se, psk
//! ```
//!
//! A message that fails to authenticate leaves the handshake as it was (as snow restores its
//! symmetric state), so a forged message cannot break a pending handshake.

import { gcm } from "@noble/ciphers/aes.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "@noble/hashes/utils.js";
import { concat, u64be, utf8 } from "./bytes.ts";
import { diffieHellman, keypairFromPrivate, type StaticKeypair } from "./keys.ts";

export const NOISE_PARAMS = "Noise_IKpsk2_25519_AESGCM_SHA256";
const DH_LEN = 32;
const TAG_LEN = 16;

/** Noise's AESGCM nonce: 32 zero bits followed by the big-endian 64-bit counter. */
export function nonce(counter: bigint): Uint8Array {
  return concat(new Uint8Array(4), u64be(counter));
}

/** ENCRYPT(k, n, ad, plaintext) of the AESGCM cipher: ciphertext followed by the 16-byte tag. */
export function encrypt(
  key: Uint8Array,
  counter: bigint,
  associatedData: Uint8Array,
  plaintext: Uint8Array,
): Uint8Array {
  return gcm(key, nonce(counter), associatedData).encrypt(plaintext);
}

/** DECRYPT(k, n, ad, ciphertext); throws when the tag does not verify. */
export function decrypt(
  key: Uint8Array,
  counter: bigint,
  associatedData: Uint8Array,
  ciphertext: Uint8Array,
): Uint8Array {
  return gcm(key, nonce(counter), associatedData).decrypt(ciphertext);
}

/** The handshake's SymmetricState (Noise §5.2), with the CipherState folded in. */
class SymmetricState {
  constructor(
    public chainingKey: Uint8Array,
    public hash: Uint8Array,
    public key: Uint8Array | null = null,
    public counter = 0n,
  ) {}

  static initialize(protocolName: string): SymmetricState {
    const name = utf8(protocolName);
    // Names up to HASHLEN bytes are zero-padded; longer ones are hashed.
    const hash = name.length <= 32 ? concat(name, new Uint8Array(32 - name.length)) : sha256(name);
    return new SymmetricState(hash, hash);
  }

  clone(): SymmetricState {
    return new SymmetricState(this.chainingKey, this.hash, this.key, this.counter);
  }

  mixHash(data: Uint8Array): void {
    this.hash = sha256(concat(this.hash, data));
  }

  mixKey(inputKeyMaterial: Uint8Array): void {
    const output = hkdf(sha256, inputKeyMaterial, this.chainingKey, undefined, 64);
    this.chainingKey = output.slice(0, 32);
    this.key = output.slice(32, 64);
    this.counter = 0n;
  }

  mixKeyAndHash(inputKeyMaterial: Uint8Array): void {
    const output = hkdf(sha256, inputKeyMaterial, this.chainingKey, undefined, 96);
    this.chainingKey = output.slice(0, 32);
    this.mixHash(output.slice(32, 64));
    this.key = output.slice(64, 96);
    this.counter = 0n;
  }

  encryptAndHash(plaintext: Uint8Array): Uint8Array {
    const ciphertext =
      this.key === null ? plaintext : encrypt(this.key, this.counter++, this.hash, plaintext);
    this.mixHash(ciphertext);
    return ciphertext;
  }

  decryptAndHash(ciphertext: Uint8Array): Uint8Array {
    const plaintext =
      this.key === null ? ciphertext : decrypt(this.key, this.counter, this.hash, ciphertext);
    if (this.key !== null) {
      this.counter++;
    }
    this.mixHash(ciphertext);
    return plaintext;
  }

  /** Split(): the initiator→responder and responder→initiator transport keys. */
  split(): [Uint8Array, Uint8Array] {
    const output = hkdf(sha256, new Uint8Array(0), this.chainingKey, undefined, 64);
    return [output.slice(0, 32), output.slice(32, 64)];
  }
}

export interface HandshakeOptions {
  /** The local static keypair. */
  keypair: StaticKeypair;
  /** The 32-byte pre-shared key, mixed in at the end of the second message. */
  psk: Uint8Array;
  prologue: Uint8Array;
  /** The responder's static public key (initiator only: IK's pre-message). */
  remoteStatic?: Uint8Array;
  /** A fixed ephemeral private key, for test vectors only; otherwise a fresh random one. */
  ephemeralPrivate?: Uint8Array;
}

/** Why a handshake message was refused. */
export class HandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HandshakeError";
  }
}

/** One IKpsk2 handshake, initiator or responder; two messages, then `split`. */
export class Handshake {
  private state: SymmetricState;
  private readonly ephemeral: StaticKeypair;
  private remoteEphemeral: Uint8Array | null = null;
  private remoteStaticKey: Uint8Array | null;
  private step = 0;

  private constructor(
    readonly initiator: boolean,
    private readonly options: HandshakeOptions,
  ) {
    if (options.psk.length !== 32) {
      throw new HandshakeError("psk must be 32 bytes");
    }
    this.state = SymmetricState.initialize(NOISE_PARAMS);
    this.state.mixHash(options.prologue);
    this.ephemeral = keypairFromPrivate(options.ephemeralPrivate ?? randomBytes(32));
    this.remoteStaticKey = options.remoteStatic ?? null;
    // The pre-message `<- s`: the responder's static key.
    this.state.mixHash(initiator ? this.requireRemoteStatic() : options.keypair.publicKey);
  }

  static initiator(options: HandshakeOptions): Handshake {
    if (options.remoteStatic?.length !== DH_LEN) {
      throw new HandshakeError("the initiator needs the responder's 32-byte static key");
    }
    return new Handshake(true, options);
  }

  static responder(options: HandshakeOptions): Handshake {
    return new Handshake(false, { ...options, remoteStatic: undefined });
  }

  /** The peer's static public key, once known (the initiator knows it from the start). */
  get remoteStatic(): Uint8Array | null {
    return this.remoteStaticKey;
  }

  get handshakeHash(): Uint8Array {
    return this.state.hash;
  }

  get finished(): boolean {
    return this.step === 2;
  }

  /** Writes the next message of this side with `payload` (encrypted). */
  writeMessage(payload: Uint8Array): Uint8Array {
    const expected = this.initiator ? 0 : 1;
    if (this.step !== expected) {
      throw new HandshakeError("not our turn to write");
    }
    const state = this.state;
    const ephemeralPublic = this.ephemeral.publicKey;
    state.mixHash(ephemeralPublic);
    // In PSK handshakes every `e` token also mixes the ephemeral key into the key.
    state.mixKey(ephemeralPublic);
    let out: Uint8Array;
    if (this.initiator) {
      const remoteStatic = this.requireRemoteStatic();
      state.mixKey(diffieHellman(this.ephemeral.privateKey, remoteStatic)); // es
      const encryptedStatic = state.encryptAndHash(this.options.keypair.publicKey); // s
      state.mixKey(diffieHellman(this.options.keypair.privateKey, remoteStatic)); // ss
      out = concat(ephemeralPublic, encryptedStatic, state.encryptAndHash(payload));
    } else {
      const remoteEphemeral = this.remoteEphemeral as Uint8Array;
      state.mixKey(diffieHellman(this.ephemeral.privateKey, remoteEphemeral)); // ee
      state.mixKey(diffieHellman(this.ephemeral.privateKey, this.requireRemoteStatic())); // se
      state.mixKeyAndHash(this.options.psk); // psk
      out = concat(ephemeralPublic, state.encryptAndHash(payload));
    }
    this.step++;
    return out;
  }

  /** Reads the peer's next message and returns its payload; throws HandshakeError if it does
   * not authenticate, leaving the handshake as it was. */
  readMessage(message: Uint8Array): Uint8Array {
    const expected = this.initiator ? 1 : 0;
    if (this.step !== expected) {
      throw new HandshakeError("not our turn to read");
    }
    const minimum = this.initiator ? DH_LEN + TAG_LEN : DH_LEN + DH_LEN + TAG_LEN + TAG_LEN;
    if (message.length < minimum) {
      throw new HandshakeError("handshake message too short");
    }
    const state = this.state.clone();
    const remoteEphemeral = message.slice(0, DH_LEN);
    let payload: Uint8Array;
    let remoteStatic = this.remoteStaticKey;
    try {
      state.mixHash(remoteEphemeral);
      state.mixKey(remoteEphemeral);
      if (this.initiator) {
        state.mixKey(diffieHellman(this.ephemeral.privateKey, remoteEphemeral)); // ee
        state.mixKey(diffieHellman(this.options.keypair.privateKey, remoteEphemeral)); // se
        state.mixKeyAndHash(this.options.psk); // psk
        payload = state.decryptAndHash(message.slice(DH_LEN));
      } else {
        state.mixKey(diffieHellman(this.options.keypair.privateKey, remoteEphemeral)); // es
        remoteStatic = state.decryptAndHash(message.slice(DH_LEN, DH_LEN + DH_LEN + TAG_LEN)); // s
        state.mixKey(diffieHellman(this.options.keypair.privateKey, remoteStatic)); // ss
        payload = state.decryptAndHash(message.slice(DH_LEN + DH_LEN + TAG_LEN));
      }
    } catch (error) {
      throw new HandshakeError(error instanceof Error ? error.message : String(error));
    }
    this.state = state;
    this.remoteEphemeral = remoteEphemeral;
    this.remoteStaticKey = remoteStatic;
    this.step++;
    return payload;
  }

  /** The transport keys `[initiator→responder, responder→initiator]` of a finished handshake. */
  split(): [Uint8Array, Uint8Array] {
    if (!this.finished) {
      throw new HandshakeError("handshake not finished");
    }
    return this.state.split();
  }

  private requireRemoteStatic(): Uint8Array {
    if (this.remoteStaticKey === null) {
      throw new HandshakeError("no remote static key");
    }
    return this.remoteStaticKey;
  }
}
