//! The panel's built files, imported as text (esbuild's `text` loader; wrangler's `Text` rule).
declare module "*.html" {
  const text: string;
  export default text;
}
declare module "*.css" {
  const text: string;
  export default text;
}
