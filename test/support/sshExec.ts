// Performs one `command:remote:Command` the way @pulumi/command does: one SSH
// session per command, the script as the remote command (sshd runs it with the
// login user's shell, `-c`), standard input piped through, nothing of the local
// environment forwarded, the server's key checked against the pinned
// `connection.hostKey` before anything else happens.
//
// It uses the OpenSSH client rather than an npm SSH library: it is the reference
// implementation of the checks that matter here (strict host-key checking in
// the key exchange, before authentication), it is already on every machine that
// runs sshd, and it adds no dependency. Every option comes from the command
// line (`-F /dev/null`: neither ~/.ssh/config nor /etc/ssh/ssh_config, whose
// Debian default forwards LANG and LC_*), the pinned key goes to a known_hosts
// file made for this one command, and the private key to a 0600 file in a 0700
// directory that is removed afterwards: never on a command line, never in an
// environment variable, never in a message.
import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** `command.remote` connection inputs this applier honours. */
export interface RemoteConnection {
    host: string;
    port?: number;
    user?: string;
    privateKey?: string;
    hostKey?: string;
}

export interface RemoteResult {
    stdout: string;
    stderr: string;
}

/** The SHA256 fingerprint of a `<type> <base64>` key, as `ssh-keygen -lf` prints it. */
export function fingerprint(publicKeyLine: string): string {
    const blob = Buffer.from(publicKeyLine.split(" ")[1] ?? "", "base64");
    return `SHA256:${crypto.createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** `[host]:port` as known_hosts spells a non-default port. */
function knownHostsName(host: string, port: number): string {
    return port === 22 ? host : `[${host}]:${port}`;
}

/**
 * Runs `script` on the connection's host as its user. Throws with the resource
 * name, user, host and port, and what went wrong (never a key).
 */
export function runRemote(name: string, connection: RemoteConnection, script: string, stdin: string | undefined): RemoteResult {
    const host = connection.host;
    const port = connection.port ?? 22;
    const user = connection.user ?? "root";
    const where = `${user}@${host} port ${port}`;
    if (!connection.hostKey) {
        // @pulumi/command would accept any key here; this applier never does.
        throw new Error(`${name}: refusing to connect to ${where} without a pinned host key (connection.hostKey)`);
    }
    if (!connection.privateKey) throw new Error(`${name}: no private key for ${where} (connection.privateKey)`);
    const keyType = connection.hostKey.split(" ")[0];
    // An ssh-rsa *key* is shown with SHA-2 signatures (OpenSSH 8.8+ refuses the
    // SHA-1 "ssh-rsa" signature algorithm); every other type is its own algorithm.
    const hostKeyAlgorithms = keyType === "ssh-rsa" ? "rsa-sha2-512,rsa-sha2-256" : keyType;

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-ssh-"));
    try {
        fs.chmodSync(dir, 0o700);
        const knownHosts = path.join(dir, "known_hosts");
        fs.writeFileSync(knownHosts, `${knownHostsName(host, port)} ${connection.hostKey}\n`, { mode: 0o600 });
        const identity = path.join(dir, "identity");
        // OpenSSH refuses a key file without its final newline.
        const key = connection.privateKey.endsWith("\n") ? connection.privateKey : `${connection.privateKey}\n`;
        fs.writeFileSync(identity, key, { mode: 0o600, flag: "wx" });
        const options = [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            `UserKnownHostsFile=${knownHosts}`,
            "GlobalKnownHostsFile=/dev/null",
            // Ask for the pinned key's type only, as a fixed host key does: a server
            // that cannot show that very key fails the check.
            `HostKeyAlgorithms=${hostKeyAlgorithms}`,
            "CheckHostIP=no",
            "UpdateHostKeys=no",
            "IdentitiesOnly=yes",
            `IdentityFile=${identity}`,
            "IdentityAgent=none",
            "PubkeyAuthentication=yes",
            "PasswordAuthentication=no",
            "KbdInteractiveAuthentication=no",
            "HostbasedAuthentication=no",
            "ForwardAgent=no",
            "ForwardX11=no",
            "ClearAllForwardings=yes",
            "RequestTTY=no",
            "ConnectTimeout=15",
            "ServerAliveInterval=15",
            // INFO, not ERROR: "Unable to negotiate ... no matching host key type"
            // (a host without a key of the pinned type) is logged at INFO.
            "LogLevel=INFO",
        ];
        const args = ["-F", "/dev/null", ...options.flatMap((o) => ["-o", o]), "-p", String(port), "-l", user, "--", host, script];
        // A minimal environment for the client itself (nothing is forwarded
        // anyway); HOME points at the scratch directory so ~/.ssh is never read or written.
        const r = spawnSync("ssh", args, {
            input: stdin ?? "",
            env: { PATH: "/usr/bin:/bin", HOME: dir, LANG: "C" },
            encoding: "utf8",
            maxBuffer: 16 * 1024 * 1024,
        });
        if (r.error) throw new Error(`${name}: cannot run ssh for ${where}: ${r.error.message}`);
        const stderr = r.stderr.trimEnd();
        if (r.status === 255) {
            if (/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No matching host key type/i.test(stderr)) {
                // One line an operator can act on: what the host showed, what was pinned.
                const shown = /fingerprint for the (\S+) key sent by the remote host is\s+(SHA256:[A-Za-z0-9+/=]+?)\.?\s*$/m.exec(stderr);
                const offer = /no matching host key type found\. Their offer: (\S+)/.exec(stderr);
                const what = shown ? `presented ${shown[1]} key ${shown[2]}` : `has no ${keyType} host key${offer ? ` (it offers ${offer[1]})` : ""}`;
                const last = stderr.split("\n").pop();
                throw new Error(`${name}: ${host} port ${port} ${what}, not the pinned key (connection.hostKey: ${keyType} ${fingerprint(connection.hostKey)}); nothing was sent (ssh: ${last})`);
            }
            if (/Connection refused/i.test(stderr)) throw new Error(`${name}: cannot reach ${host} port ${port}: connection refused. ssh: ${stderr}`);
            if (/Permission denied/i.test(stderr)) throw new Error(`${name}: ${host} port ${port} refused the login as ${user}. ssh: ${stderr}`);
        }
        if (r.status !== 0) throw new Error(`${name}: command failed on ${where} (exit ${r.status ?? r.signal}): ${stderr}`);
        return { stdout: r.stdout.trimEnd(), stderr };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
