'use strict';
// The npm shim: finds this platform's prebuilt binary (from the optional per-platform package
// npm installed beside this one, or the folder REMOTE_AGENTS_BINARY_DIR names) and runs it with
// stdio inherited, passing on its exit code and the signals that stop it. Nothing is downloaded.

const { spawn } = require('node:child_process');
const path = require('node:path');

// `${process.platform} ${process.arch}` -> the package that holds that platform's binaries.
const PLATFORMS = {
  'linux x64': 'remote-agents-linux-x64',
  'linux arm64': 'remote-agents-linux-arm64',
  'darwin x64': 'remote-agents-darwin-x64',
  'darwin arm64': 'remote-agents-darwin-arm64',
  'win32 x64': 'remote-agents-win32-x64',
};

function binaryPath(name) {
  const exe = process.platform === 'win32' ? `${name}.exe` : name;
  const override = process.env.REMOTE_AGENTS_BINARY_DIR;
  if (override) {
    return path.join(override, exe);
  }
  const platform = `${process.platform}-${process.arch}`;
  const pkg = PLATFORMS[`${process.platform} ${process.arch}`];
  if (!pkg) {
    throw new Error(
      `no prebuilt binary for ${platform}: the npm packages cover ` +
        `${Object.keys(PLATFORMS).map((k) => k.replace(' ', '-')).join(', ')}. ` +
        'Build it with `cargo build --release` and set REMOTE_AGENTS_BINARY_DIR to target/release.',
    );
  }
  let dir;
  try {
    dir = path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new Error(
      `the binary package for ${platform} (${pkg}) is not installed: npm installs it with ` +
        'remote-agents unless optional dependencies are omitted (--omit=optional, ' +
        '--no-optional) or the install was copied from another platform. Reinstall remote-agents ' +
        `on this machine, or set REMOTE_AGENTS_BINARY_DIR to a folder holding ${exe}.`,
    );
  }
  return path.join(dir, 'bin', exe);
}

module.exports = function launch(name) {
  let file;
  try {
    file = binaryPath(name);
  } catch (error) {
    process.stderr.write(`${name}: ${error.message}\n`);
    process.exit(1);
  }
  // `remote-agents install-mcp` registers this script rather than the binary it runs: the
  // script's path stays put across npm upgrades, the platform package's folder may not.
  const env =
    name === 'remote-agents' && process.argv[1]
      ? { ...process.env, REMOTE_AGENTS_LAUNCHER: process.argv[1] }
      : process.env;
  const child = spawn(file, process.argv.slice(2), { stdio: 'inherit', env });
  // A service manager or an MCP client stops the shim: stop the binary the same way.
  const forward = (signal) => () => child.kill(signal);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, forward(signal));
  }
  child.on('error', (error) => {
    process.stderr.write(`${name}: cannot run ${file}: ${error.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    if (signal) {
      // Die of the same signal, so the caller sees what the binary saw.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    } else {
      process.exit(code ?? 1);
    }
  });
};
