//! The Chats view: each picked host's local AI-chat history (`chat_list`: Claude Code, opencode,
//! Codex, Cline, Roo, Kilo, Zed) as one list, newest first, every chat labelled with its host and
//! provider, paged where a host has more. Opening a chat reads its messages (`chat_get`, paged and
//! bounded). A resumable chat can be continued: a prompt, and a button "Continue on HOST" that
//! runs `task_dispatch` with the chat's session id as `resume`, under the host's mode (shown next
//! to the button), and then follows the task live (`followTask`). Reads need no click; the
//! dispatch does.

import { type App, listWhenShown, pickForListing } from "./app.ts";
import { button, element, errorText, outcomeProblem } from "./dom.ts";
import {
  CHAT_PROVIDERS,
  type ChatGetResult,
  type ChatListResult,
  type ChatMessage,
  type ChatSummary,
  cut,
  type HostChat,
  type HostLabel,
  mergeChats,
  modeMeaning,
  providerName,
  taskProviderOf,
  type TaskStatus,
  timeText,
} from "./tasks.ts";
import { followTask, type TaskFollower } from "./tasks-view.ts";

/** Chats asked of each host per page, and messages per page of one chat. */
const CHAT_PAGE = 50;
const MESSAGE_PAGE = 100;
/** Bytes of message text one `chat_get` page carries: enough to read, small enough for a phone. */
const MESSAGE_BYTES = 256 * 1024;
/** Characters of one message the page shows (the node already cuts a message at 32 KiB). */
const MAX_MESSAGE_TEXT = 8_000;
/** `task_dispatch` answers at once with the task's record; starting the CLI may take a moment. */
const DISPATCH_DEADLINE_MS = 30_000;

/** What one host answered to the listing so far: its chats (every page read), or its error. */
interface HostPage {
  host: HostLabel;
  chats: ChatSummary[];
  total: number;
  nextOffset: number | undefined;
  /** Files the host did not read, and why, as it said. */
  skipped: string[];
  error: string | null;
  /** Why what it shows is from an earlier listing (the host is not reachable now). */
  stale: string | null;
}

export function mountChatsView(app: App, root: HTMLElement): void {
  const selector = element("input", { id: "chats-selector", type: "text", value: "all", spellcheck: "false", autocomplete: "off" });
  const provider = element(
    "select",
    { id: "chats-provider" },
    element("option", { value: "" }, "every provider"),
    ...CHAT_PROVIDERS.map((name) => element("option", { value: name }, providerName(name))),
  );
  const status = element("p", { class: "chats-status muted", "aria-live": "polite" });
  const errors = element("div", { class: "chats-errors" });
  const list = element("ul", { class: "chat-list", id: "chat-list" });
  const more = element("div", { class: "chats-more form-row" });
  const detail = element("div", { class: "chat-detail-slot" });
  let pages: HostPage[] = [];
  let listedPeers = "";
  /** The selector and provider of the last listing: what it shows answers them. */
  let listedQuery = "";
  let listing: Promise<void> | null = null;
  /** The tasks this view started (followed in the open chat's panel): stopped when it closes. */
  let followers: TaskFollower[] = [];

  const listButton = button("List chats", { class: "primary", id: "chats-list" }, () => listChats());
  root.append(
    element("p", { class: "muted" }, "The AI chats each host keeps (Claude Code, opencode, Codex, Cline, Roo, Kilo, Zed), newest first. Open one to read it; continue a resumable one on its host."),
    element("div", { class: "form-row" }, element("label", {}, "Hosts (selector)", selector), element("label", {}, "Provider", provider), listButton),
    status,
    errors,
    list,
    more,
    detail,
  );

  /** One host's next page of `chat_list`, as it answered (or its error in the node's words). */
  async function readPage(host: HostLabel, offset: number): Promise<{ result: ChatListResult | null; error: string | null }> {
    const args: Record<string, unknown> = { limit: CHAT_PAGE, offset };
    if (provider.value !== "") {
      args.provider = provider.value;
    }
    try {
      return { result: await app.result<ChatListResult>(host.peerId, "chat_list", args), error: null };
    } catch (error) {
      return { result: null, error: errorText(error) };
    }
  }

  function skippedLines(result: ChatListResult): string[] {
    const lines = (result.skipped ?? []).map((skip) => `${providerName(skip.provider)} ${skip.path}: ${skip.reason}`);
    if ((result.skipped_more ?? 0) > 0) {
      lines.push(`${result.skipped_more} more not read`);
    }
    if ((result.hidden ?? 0) > 0) {
      lines.push(`${result.hidden} chat files left out by the host's path deny list`);
    }
    return lines;
  }

  function render(): void {
    // A host that failed this time still shows what it listed before (the view keeps its content).
    const merged = mergeChats(pages);
    list.replaceChildren(...merged.map(chatRow));
    errors.replaceChildren();
    for (const page of pages) {
      if (page.error !== null) {
        errors.append(element("p", { class: "error", role: "alert", "data-host": page.host.name }, `${page.host.name}: ${page.error}`));
      }
      if (page.stale !== null) {
        errors.append(element("p", { class: "note", "data-host": page.host.name }, `${page.host.name}: ${page.stale}`));
      }
      if (page.skipped.length > 0) {
        errors.append(
          element(
            "details",
            { class: "note", "data-host": page.host.name },
            element("summary", {}, `${page.host.name}: ${page.skipped.length} chat file${page.skipped.length === 1 ? "" : "s"} not read`),
            element("ul", {}, ...page.skipped.map((line) => element("li", {}, line))),
          ),
        );
      }
    }
    more.replaceChildren(
      ...pages
        .filter((page) => page.error === null && page.stale === null && page.nextOffset !== undefined)
        .map((page) =>
          button(`More chats from ${page.host.name} (${page.chats.length} of ${page.total} shown)`, { class: "chats-next" }, () => nextPage(page)),
        ),
    );
    const readable = pages.filter((page) => page.error === null && page.stale === null);
    const total = readable.reduce((sum, page) => sum + page.total, 0);
    status.textContent =
      `${total} chat${total === 1 ? "" : "s"} on ${readable.length} of ${pages.length} host${pages.length === 1 ? "" : "s"}` +
      (merged.length < total ? ` (${merged.length} shown)` : "") +
      (total === 0 && readable.length > 0 ? ": no AI chat history found on them" : "");
  }

  async function nextPage(page: HostPage): Promise<void> {
    if (page.nextOffset === undefined) {
      return;
    }
    const { result, error } = await readPage(page.host, page.nextOffset);
    if (result === null) {
      // The pages already read stay; the failure shows on the host's line.
      errors.append(element("p", { class: "error", role: "alert", "data-host": page.host.name }, `${page.host.name}: ${error}`));
      return;
    }
    page.chats.push(...result.chats);
    page.total = result.total;
    page.nextOffset = result.next_offset;
    page.skipped.push(...skippedLines(result));
    render();
  }

  async function listOnce(): Promise<void> {
    const hosts = pickForListing(app, selector.value, status, errors);
    if (hosts === null) {
      return;
    }
    status.textContent = `reading chats on ${hosts.map((host) => host.name).join(", ")}…`;
    const answers = await Promise.all(
      hosts.map(async (host): Promise<HostPage> => {
        const label = { name: host.name, peerId: host.peerId };
        const { result, error } = await readPage(label, 0);
        if (result === null) {
          // A host that cannot answer now keeps the chats it showed before, with its error.
          const before = pages.find((page) => page.host.peerId === host.peerId);
          return { host: label, chats: before?.chats ?? [], total: before?.total ?? 0, nextOffset: undefined, skipped: [], error, stale: null };
        }
        return { host: label, chats: result.chats, total: result.total, nextOffset: result.next_offset, skipped: skippedLines(result), error: null, stale: null };
      }),
    );
    // Hosts listed before that are not reachable now (the page is rejoining, or they left) keep
    // the chats they showed, marked, as long as the selector is the same.
    const query = `${selector.value}\n${provider.value}`;
    const absent =
      query === listedQuery
        ? pages
            .filter((page) => !hosts.some((host) => host.peerId === page.host.peerId))
            .map((page) => ({ ...page, nextOffset: undefined, stale: "not reachable now; showing the chats it listed before" }))
        : [];
    pages = [...answers, ...absent];
    listedQuery = query;
    listedPeers = pages.map((page) => page.host.peerId).sort().join(",");
    render();
  }

  async function listChats(): Promise<void> {
    if (listing !== null) {
      return listing;
    }
    listing = listOnce().finally(() => {
      listing = null;
    });
    return listing;
  }

  function chatRow(entry: HostChat): HTMLElement {
    const { host, chat } = entry;
    const facts = [
      timeText(chat.updated_at_ms),
      `${chat.messages} message${chat.messages === 1 ? "" : "s"}`,
      chat.resumable ? "resumable" : "read-only",
    ];
    if (chat.cwd !== undefined) {
      facts.push(chat.cwd);
    }
    return element(
      "li",
      {
        class: "chat-row",
        "data-host": host.name,
        "data-provider": chat.provider,
        "data-session": chat.session_id,
        "data-resumable": String(chat.resumable),
      },
      element(
        "div",
        { class: "chat-row-head" },
        element("strong", { class: "chat-host" }, host.name),
        element("span", { class: `badge chat-provider provider-${chat.provider}` }, providerName(chat.provider)),
        button(chat.title || "(untitled chat)", { class: "chat-open link" }, () => openChat(entry)),
      ),
      element("div", { class: "chat-row-meta muted" }, facts.join(" · ")),
    );
  }

  function messageItem(message: ChatMessage): HTMLElement {
    const label = message.tool === undefined ? message.role : `${message.role} · ${message.tool}`;
    const head = element("div", { class: "message-head" }, element("span", { class: "message-role" }, label));
    if (message.timestamp_ms !== undefined) {
      head.append(element("span", { class: "muted" }, timeText(message.timestamp_ms)));
    }
    return element(
      "li",
      { class: "message", "data-role": message.role },
      head,
      element("pre", { class: "message-text" }, cut(message.text, MAX_MESSAGE_TEXT)),
    );
  }

  /** Reads `entry`'s chat and shows it, with the continue box if it is resumable. */
  async function openChat(entry: HostChat): Promise<void> {
    const { host, chat } = entry;
    for (const follower of followers) {
      follower.stop();
    }
    followers = [];
    const messages = element("ol", { class: "chat-messages" });
    const readNote = element("p", { class: "note", role: "status" }, `reading the chat on ${host.name}…`);
    const moreMessages = element("div", { class: "form-row" });
    const panel = element(
      "section",
      { class: "chat-detail result", "data-host": host.name, "data-session": chat.session_id, "aria-label": "chat" },
      element("h3", { class: "chat-title" }, chat.title || "(untitled chat)"),
      element(
        "p",
        { class: "chat-meta muted" },
        [host.name, providerName(chat.provider), `session ${chat.session_id}`, ...(chat.cwd === undefined ? [] : [`in ${chat.cwd}`])].join(" · "),
      ),
      readNote,
      messages,
      moreMessages,
    );
    detail.replaceChildren(panel);
    panel.scrollIntoView({ block: "nearest" });

    const readMessages = async (offset: number): Promise<void> => {
      try {
        const result = await app.result<ChatGetResult>(host.peerId, "chat_get", {
          provider: chat.provider,
          session_id: chat.session_id,
          offset,
          limit: MESSAGE_PAGE,
          max_bytes: MESSAGE_BYTES,
        });
        messages.append(...result.messages.map(messageItem));
        const shownCount = messages.childElementCount;
        readNote.className = "note";
        readNote.removeAttribute("role");
        readNote.textContent =
          `${shownCount} of ${result.total_messages} message${result.total_messages === 1 ? "" : "s"} shown` +
          (result.truncated ? " (long texts cut by the host)" : "");
        moreMessages.replaceChildren();
        const next = result.next_offset;
        if (next !== undefined) {
          moreMessages.append(button(`More messages (${shownCount} of ${result.total_messages})`, {}, () => readMessages(next)));
        }
      } catch (error) {
        // The messages already read stay; the node's words say why the rest did not come.
        readNote.className = "error";
        readNote.setAttribute("role", "alert");
        readNote.textContent = `${host.name}: ${errorText(error)}`;
      }
    };

    const taskProvider = taskProviderOf(chat.provider);
    if (chat.resumable && taskProvider !== null) {
      panel.append(continueBox(host, chat, taskProvider));
    } else {
      panel.append(element("p", { class: "note" }, `${providerName(chat.provider)} chats are read-only here: no command-line program continues them.`));
    }
    await readMessages(0);
  }

  /** The prompt, the folder, the host's mode, and "Continue on HOST". */
  function continueBox(host: HostLabel, chat: ChatSummary, taskProvider: string): HTMLElement {
    const prompt = element("textarea", { class: "continue-prompt", rows: "3", placeholder: "What to ask next in this chat" });
    const folder = element("input", { class: "continue-cwd", type: "text", value: chat.cwd ?? "", placeholder: "the host's home folder", spellcheck: "false" });
    const mode = element("p", { class: "continue-mode" });
    const problem = element("p", { class: "error", role: "alert", hidden: "" });
    const tasks = element("div", { class: "chat-tasks" });
    const showMode = () => {
      const current = app.host(host.peerId);
      const name = current?.mode ?? "";
      mode.replaceChildren(
        element("span", { class: `badge mode mode-${name}` }, name || "unknown"),
        ` ${host.name} is in ${modeMeaning(name)}.`,
      );
      mode.dataset.mode = name;
    };
    showMode();
    const unsubscribe = app.onChange(() => {
      if (!mode.isConnected) {
        unsubscribe();
        return;
      }
      showMode();
    });
    const dispatch = button(`Continue on ${host.name}`, { class: "primary continue-run" }, async () => {
      problem.hidden = true;
      const text = prompt.value.trim();
      if (text.length === 0) {
        problem.textContent = "write what to ask first";
        problem.hidden = false;
        return;
      }
      const args: Record<string, unknown> = { provider: taskProvider, prompt: text, resume: chat.session_id };
      if (folder.value.trim().length > 0) {
        args.cwd = folder.value.trim();
      }
      try {
        const outcome = await app.request(host.peerId, "task_dispatch", args, DISPATCH_DEADLINE_MS);
        const refused = outcomeProblem("task_dispatch", outcome);
        if (refused !== null || outcome.status !== "ok") {
          problem.textContent = `${host.name}: ${refused ?? "task_dispatch"}`;
          problem.hidden = false;
          return;
        }
        const follower = followTask(app, host, outcome.result as TaskStatus);
        followers.push(follower);
        tasks.prepend(follower.element);
        prompt.value = "";
      } catch (error) {
        problem.textContent = `${host.name}: task_dispatch: ${errorText(error)}`;
        problem.hidden = false;
      }
    });
    return element(
      "div",
      { class: "continue" },
      element("h4", {}, `Continue this chat on ${host.name}`),
      mode,
      element("label", { class: "continue-label" }, "Prompt", prompt),
      element("div", { class: "form-row" }, element("label", {}, "Folder (cwd)", folder), dispatch),
      problem,
      tasks,
    );
  }

  listWhenShown(app, root, selector, () => listedPeers, {
    onShown: () => {
      if (listedPeers === "" && pages.length === 0) {
        void listChats();
      }
    },
    onNewHosts: () => {
      if (listing === null) {
        void listChats();
      }
    },
  });
  selector.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      listButton.click();
    }
  });
  provider.addEventListener("change", () => void listChats());
}
