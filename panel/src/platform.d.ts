//! The web platform APIs the panel's code may use, declared here instead of taking the whole DOM
//! library: each exists alike in browsers and in Node ≥ 20 (where the tests run), so typechecking
//! against this list keeps out both Node-only and browser-only calls. The tests' own tsconfig uses
//! Node's types and leaves this file out.

declare var crypto: {
  getRandomValues<T extends ArrayBufferView>(array: T): T;
  randomUUID(): string;
  readonly subtle: {
    digest(algorithm: string, data: ArrayBufferView | ArrayBuffer): Promise<ArrayBuffer>;
  };
};

declare class TextEncoder {
  encode(input?: string): Uint8Array;
}

declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  decode(input?: ArrayBufferView | ArrayBuffer): string;
}

declare function atob(data: string): string;
declare function btoa(data: string): string;

declare var performance: { now(): number };

declare function setTimeout(handler: () => void, timeout?: number): unknown;
declare function clearTimeout(id: unknown): void;
