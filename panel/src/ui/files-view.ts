//! The Files view: a search form (hosts by selector, name glob, content text, images only,
//! optional roots) whose "Search" runs `file_search` on every picked host at once; the results
//! grouped per host (a host's refusal in the node's words under its name), image matches with
//! their `file_thumbnail` inline; per match a chunked download (`read_file`, progress, SHA-256,
//! the bytes offered as a file) and a copy to another host that this page coordinates
//! (`transfer_source` on the source, `transfer_receive` on the destination: live progress, the
//! path it takes, the SHA-256 both ends verified, or the refusal in the node's words); "Move"
//! then removes the source (`file_remove`, only while it is the file copied; edit mode keeps a
//! backup on the source host). Nothing runs without a click.

import type { App } from "./app.ts";
import { button, byteSize, element, errorText } from "./dom.ts";
import type { Host } from "./fleet.ts";
import {
  baseName,
  copy,
  type CopyStatus,
  download,
  type FileSearchResult,
  type FileStatResult,
  type FileThumbnailResult,
  isImagePath,
  pickedText,
  type ReadFileResult,
  rateText,
  type SearchMatch,
  searchArgs,
  THUMBNAIL_SIZE,
  timeText,
  type TransferReceiveResult,
  type FileRemoveResult,
  type TransferSourceResult,
} from "./files.ts";

/** How long a search may take on one host (the node stops its walk at 10 s). */
const SEARCH_DEADLINE_MS = 60_000;
/** One `read_file` chunk or thumbnail. */
const READ_DEADLINE_MS = 60_000;
/** A copy lasts as long as its file takes (the page's call to the destination). */
const RECEIVE_DEADLINE_MS = 6 * 60 * 60 * 1000;
/** Thumbnails asked of one host at a time. */
const THUMBNAILS_IN_FLIGHT = 3;

/** Runs tasks with at most `limit` in flight. */
function limiter(limit: number): (task: () => Promise<void>) => void {
  let running = 0;
  const queue: Array<() => Promise<void>> = [];
  const next = () => {
    while (running < limit && queue.length > 0) {
      const task = queue.shift() as () => Promise<void>;
      running++;
      void task().finally(() => {
        running--;
        next();
      });
    }
  };
  return (task) => {
    queue.push(task);
    next();
  };
}

function hostName(host: Host): string {
  return host.name || `${host.peerId.slice(0, 12)}…`;
}

/** A labelled field of the form. */
function field(label: string, control: HTMLElement, attributes: Record<string, string> = {}): HTMLLabelElement {
  return element("label", attributes, label, control);
}

/** The bar, the numbers and the outcome of one download or copy. */
interface Meter {
  root: HTMLElement;
  progress: HTMLProgressElement;
  line: HTMLElement;
  sha: HTMLElement;
  error: HTMLElement;
}

function meter(className: string): Meter {
  const progress = element("progress", { max: "1", value: "0" });
  const line = element("span", { class: `${className}-line` });
  const sha = element("code", { class: `${className}-sha sha` });
  const error = element("p", { class: `${className}-error error`, role: "alert" });
  const root = element("div", { class: `${className} meter`, "data-state": "idle" }, progress, line, sha, error);
  root.hidden = true;
  return { root, progress, line, sha, error };
}

function setMeter(meter: Meter, state: string, done: number, total: number | null): void {
  meter.root.hidden = false;
  meter.root.dataset.state = state;
  if (total === null) {
    meter.progress.removeAttribute("value");
  } else {
    meter.progress.max = Math.max(total, 1);
    meter.progress.value = total === 0 ? 1 : done;
  }
}

export function mountFilesView(app: App, root: HTMLElement): void {
  const selector = element("input", { id: "files-selector", type: "text", value: "all", autocomplete: "off", spellcheck: "false" });
  const picked = element("span", { id: "files-picked", class: "muted", "aria-live": "polite" });
  const name = element("input", { id: "files-name", type: "text", placeholder: "*.pdf, report-202?-*", autocomplete: "off", spellcheck: "false" });
  const content = element("input", { id: "files-content", type: "text", placeholder: "regular expression", autocomplete: "off", spellcheck: "false" });
  const images = element("input", { id: "files-images", type: "checkbox" });
  const roots = element("input", { id: "files-roots", type: "text", placeholder: "default: Pictures, Documents, … home", autocomplete: "off", spellcheck: "false" });
  const formError = element("p", { id: "files-form-error", class: "error", role: "alert" });
  formError.hidden = true;
  const results = element("div", { id: "files-results", class: "files-results" });
  /** Every destination picker shown, refreshed as hosts come and go. */
  const pickers = new Set<() => void>();

  const updatePicked = () => {
    try {
      const hosts = app.select(selector.value.trim() || "all");
      picked.textContent = pickedText(hosts.map(hostName));
      picked.classList.remove("error");
    } catch (error) {
      picked.textContent = errorText(error);
      picked.classList.add("error");
    }
  };
  selector.addEventListener("input", updatePicked);

  const search = button("Search", { id: "files-search", class: "primary" }, async () => {
    formError.hidden = true;
    let hosts: Host[];
    try {
      hosts = app.select(selector.value.trim() || "all");
    } catch (error) {
      formError.textContent = `hosts: ${errorText(error)}`;
      formError.hidden = false;
      return;
    }
    const built = searchArgs({ name: name.value, content: content.value, imagesOnly: images.checked, roots: roots.value });
    if ("error" in built) {
      formError.textContent = built.error;
      formError.hidden = false;
      return;
    }
    if (hosts.length === 0) {
      formError.textContent = `the selector ${pickedText([])}: wait for hosts to be read in the Fleet view, or change it`;
      formError.hidden = false;
      return;
    }
    pickers.clear();
    results.replaceChildren();
    const imagesOnly = images.checked;
    await Promise.all(hosts.map((host) => searchHost(host, built.args, imagesOnly)));
  });

  const form = element(
    "form",
    { id: "files-form", class: "files-form" },
    element(
      "div",
      { class: "form-row" },
      field("Hosts (selector)", selector, { class: "files-hosts-field" }),
      picked,
    ),
    element(
      "div",
      { class: "form-row" },
      field("Name (glob)", name),
      field("Content (regex)", content),
      field("Roots (optional, comma-separated)", roots),
    ),
    element(
      "div",
      { class: "form-row files-actions" },
      element("label", { class: "check" }, images, "images only"),
      search,
    ),
    formError,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!search.disabled) {
      search.click();
    }
  });
  root.append(form, results);
  app.onChange(() => {
    updatePicked();
    for (const refresh of pickers) {
      refresh();
    }
  });
  updatePicked();

  /** One host's search: its group of results, or its refusal under its name. */
  async function searchHost(host: Host, args: Record<string, unknown>, imagesOnly: boolean): Promise<void> {
    const status = element("p", { class: "files-host-status muted" }, "searching…");
    const list = element("ul", { class: "files-matches" });
    const group = element(
      "section",
      { class: "files-host result", "data-name": host.name, "data-peer": host.peerId, "data-state": "searching" },
      element("h3", { class: "files-host-name" }, hostName(host), element("span", { class: `badge mode mode-${host.mode}` }, host.mode)),
      status,
      list,
    );
    results.append(group);
    let found: FileSearchResult;
    try {
      found = await app.result<FileSearchResult>(host.peerId, "file_search", args, SEARCH_DEADLINE_MS);
    } catch (error) {
      group.dataset.state = "error";
      status.className = "files-host-error error";
      status.setAttribute("role", "alert");
      status.textContent = errorText(error);
      return;
    }
    group.dataset.state = "done";
    const count = `${found.matches.length} match${found.matches.length === 1 ? "" : "es"}`;
    const stopped = found.truncated ? ` (stopped early: ${found.truncated_reason ?? "max results"})` : "";
    status.textContent = `${count}${stopped} in ${found.searched_roots.join(", ") || "no root"}`;
    const thumbnails = limiter(THUMBNAILS_IN_FLIGHT);
    for (const match of found.matches) {
      list.append(matchItem(host, match, imagesOnly || isImagePath(match.path), thumbnails));
    }
  }

  /** One match: its thumbnail, facts, download and copy. */
  function matchItem(host: Host, match: SearchMatch, image: boolean, thumbnails: (task: () => Promise<void>) => void): HTMLElement {
    const facts = [byteSize(match.size), timeText(match.modified_ms)].filter((part) => part.length > 0).join(" · ");
    const info = element(
      "div",
      { class: "files-info" },
      element("code", { class: "files-path" }, match.path),
      element("span", { class: "files-facts muted" }, facts),
    );
    const item = element("li", { class: "files-match", "data-path": match.path });
    if (image) {
      const slot = element("div", { class: "thumb-slot", "data-state": "loading" }, element("span", { class: "muted" }, "…"));
      item.append(slot);
      thumbnails(() => thumbnail(host, match.path, slot));
    }
    item.append(info, downloadPart(host, match), copyPart(host, match));
    return item;
  }

  async function thumbnail(host: Host, path: string, slot: HTMLElement): Promise<void> {
    try {
      const result = await app.result<FileThumbnailResult>(host.peerId, "file_thumbnail", { path, max_size: THUMBNAIL_SIZE }, READ_DEADLINE_MS);
      const image = element("img", {
        class: "thumb",
        alt: `${baseName(path)}, ${result.width}×${result.height} ${result.format}`,
        title: `${result.width}×${result.height} ${result.format}`,
        width: String(result.thumbnail_width),
        height: String(result.thumbnail_height),
        src: `data:${result.mime_type};base64,${result.data}`,
      });
      slot.dataset.state = "done";
      slot.replaceChildren(image);
    } catch (error) {
      slot.dataset.state = "error";
      slot.replaceChildren(element("span", { class: "thumb-error error" }, errorText(error)));
    }
  }

  /** "Download": `read_file` chunk by chunk, a Blob part each, then offered as a file. */
  function downloadPart(host: Host, match: SearchMatch): HTMLElement {
    const shown = meter("download-status");
    const link = element("a", { class: "download-link", download: baseName(match.path) });
    link.hidden = true;
    let url: string | null = null;
    const start = button("Download", { class: "download" }, async () => {
      if (url !== null) {
        URL.revokeObjectURL(url);
        url = null;
      }
      link.hidden = true;
      shown.sha.textContent = "";
      delete shown.sha.dataset.sha256;
      shown.error.textContent = "";
      setMeter(shown, "running", 0, match.size);
      shown.line.textContent = `reading ${byteSize(match.size)}…`;
      const parts: Blob[] = [];
      const began = performance.now();
      try {
        const before = await app.result<FileStatResult>(host.peerId, "file_stat", { path: match.path }, READ_DEADLINE_MS);
        const done = await download({
          read: (offset, length) =>
            app.result<ReadFileResult>(host.peerId, "read_file", { path: match.path, offset, length }, READ_DEADLINE_MS),
          // Each chunk becomes its own Blob part: the browser may keep them out of the heap,
          // and nothing is copied into one growing array.
          sink: (bytes) => parts.push(new Blob([bytes as Uint8Array<ArrayBuffer>])),
          progress: (bytes, total) => {
            setMeter(shown, "running", bytes, total);
            const seconds = (performance.now() - began) / 1000;
            shown.line.textContent = `${byteSize(bytes)} of ${byteSize(total)}${seconds > 0 ? ` · ${rateText(bytes / seconds, byteSize)}` : ""}`;
          },
        });
        const after = await app.result<FileStatResult>(host.peerId, "file_stat", { path: match.path }, READ_DEADLINE_MS);
        if (after.size !== done.size || after.modified_ms !== before.modified_ms || before.size !== done.size) {
          throw new Error("the file changed while it was read (its size or modification time differs from before): download it again");
        }
        const blob = new Blob(parts, { type: "application/octet-stream" });
        url = URL.createObjectURL(blob);
        link.href = url;
        link.textContent = `save ${baseName(match.path)} again`;
        link.hidden = false;
        setMeter(shown, "done", done.size, done.size);
        shown.line.textContent = `${byteSize(done.size)} (${done.size} bytes) downloaded in ${done.calls} chunk${done.calls === 1 ? "" : "s"}`;
        shown.sha.textContent = `sha256 ${done.sha256}`;
        shown.sha.dataset.sha256 = done.sha256;
        link.click();
      } catch (error) {
        shown.root.dataset.state = "failed";
        shown.error.textContent = `download failed: ${errorText(error)}`;
      }
    });
    return element("div", { class: "files-download" }, start, link, shown.root);
  }

  /** "Send copy to HOST": this page coordinates the transfer between the two hosts. */
  function copyPart(source: Host, match: SearchMatch): HTMLElement {
    const to = element("select", { class: "copy-to", "aria-label": "destination host" });
    const path = element("input", { class: "copy-path", type: "text", value: match.path, "aria-label": "destination path", spellcheck: "false" });
    const shown = meter("copy-status");
    const state = element("span", { class: "copy-state badge" });
    const via = element("span", { class: "copy-via" });
    shown.root.prepend(element("div", { class: "copy-facts" }, state, via));
    /** Copies the match to the chosen host; with `move`, then removes it here (as copied). */
    const run = async (move: boolean) => {
      const destination = app.host(to.value);
      if (destination === undefined) {
        shown.root.hidden = false;
        shown.error.textContent = "pick a destination host";
        return;
      }
      const toPath = path.value.trim();
      if (toPath.length === 0) {
        shown.root.hidden = false;
        shown.error.textContent = "give the destination path";
        return;
      }
      const toName = hostName(destination);
      const show = (status: CopyStatus) => {
        setMeter(shown, status.state, status.bytesDone, status.size);
        state.textContent = status.state;
        state.dataset.state = status.state;
        via.textContent = status.path === null ? "" : `via ${status.path}`;
        via.dataset.path = status.path ?? "";
        const parts = [`${hostName(source)} → ${toName}`];
        if (status.size !== null) {
          parts.push(`${byteSize(status.bytesDone)} of ${byteSize(status.size)}`);
        }
        if (status.rateBytesPerSec > 0) {
          parts.push(rateText(status.rateBytesPerSec, byteSize));
        }
        if (status.landedAt !== null) {
          parts.push(`at ${status.landedAt}`);
        }
        if (status.resumedFrom > 0) {
          parts.push(`resumed from ${byteSize(status.resumedFrom)}`);
        }
        if (status.state === "opening") {
          parts.push(`asking ${hostName(source)} to open the file…`);
        }
        if (status.state === "removing") {
          parts.push(`removing it from ${hostName(source)}…`);
        }
        if (status.state === "moved") {
          parts.push(
            status.sourceBackup === null
              ? `removed from ${hostName(source)}`
              : `removed from ${hostName(source)} (kept as a backup at ${status.sourceBackup})`,
          );
        }
        shown.line.textContent = parts.join(" · ");
        shown.sha.textContent = status.sha256 === null ? "" : `sha256 ${status.sha256}`;
        if (status.sha256 === null) {
          delete shown.sha.dataset.sha256;
        } else {
          shown.sha.dataset.sha256 = status.sha256;
        }
        shown.error.textContent = status.error ?? "";
      };
      await copy(
        { fromName: hostName(source), fromPath: match.path, toAgentId: destination.peerId, toName, toPath, move },
        {
          remove: (args) => app.result<FileRemoveResult>(source.peerId, "file_remove", args, READ_DEADLINE_MS),
          source: (args) => app.result<TransferSourceResult>(source.peerId, "transfer_source", args, READ_DEADLINE_MS),
          receive: (args, onChunk) =>
            app.result<TransferReceiveResult>(destination.peerId, "transfer_receive", args, RECEIVE_DEADLINE_MS, onChunk),
          now: () => performance.now(),
        },
        show,
      );
    };
    const send = button("Send copy", { class: "copy" }, () => run(false));
    const moveButton = button("Move", { class: "move" }, () => run(true));
    const label = () => {
      const destination = app.host(to.value);
      send.textContent = destination === undefined ? "Send copy" : `Send copy to ${hostName(destination)}`;
      moveButton.textContent = destination === undefined ? "Move" : `Move to ${hostName(destination)}`;
    };
    const refresh = () => {
      const chosen = to.value;
      const hosts = app.reachable().filter((host) => host.peerId !== source.peerId);
      to.replaceChildren(
        ...hosts.map((host) =>
          element("option", { value: host.peerId, "data-name": host.name }, host.mode.length > 0 ? `${hostName(host)} (${host.mode})` : hostName(host)),
        ),
      );
      if (hosts.length === 0) {
        to.append(element("option", { value: "" }, "no other reachable host"));
      }
      if (hosts.some((host) => host.peerId === chosen)) {
        to.value = chosen;
      }
      to.disabled = hosts.length === 0;
      label();
    };
    to.addEventListener("change", label);
    refresh();
    pickers.add(refresh);
    return element(
      "div",
      { class: "files-copy" },
      element("div", { class: "copy-row" }, element("span", { class: "copy-label" }, "Copy to"), to, path, send, moveButton),
      shown.root,
    );
  }
}
