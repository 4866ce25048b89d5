// Stack configs for tests: the committed stacks, and a three-app stack of the
// tests' own that exercises every option (ssh host, debug policy, no KV, KV v1).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as yaml from "js-yaml";
import type { RawStackInputs } from "../../config";
import { flattenConfig, loadStackConfig, REPO_ROOT } from "./harness";

/** A well-formed ed25519 host key for stacks that are only evaluated, never connected to. */
export const TEST_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBv83hDHciwD8/sWXYgYe+9kqysuiEVjwwjxuYeFUSqQ";

/** A real (self-signed, throwaway) certificate: `vault:caCertFile` must hold certificates only. */
export const TEST_LISTENER_CA_PEM = `-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUaa81Q25Wy2zzQVVF5ezhsiHTlqMwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQdGVzdC1saXN0ZW5lci1jYTAgFw0yNjEyMDExNzA0MDlaGA8y
MTI2MTEwNzE3MDQwOVowGzEZMBcGA1UEAwwQdGVzdC1saXN0ZW5lci1jYTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABBOboZhzFAILJVmnlBMcOQJnUTR4uKsfMGoM
eHazhNgYBgwrgDJVA2Vx7iNthL9Nu2mEAozEIutAb+SXKjtrO+GjUzBRMB0GA1Ud
DgQWBBQE3mmVvf5T2ododrPdepl6kfkKgjAfBgNVHSMEGDAWgBQE3mmVvf5T2odo
drPdepl6kfkKgjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQC7
bqqU/aFHw9kAIUoYLZd9xipjXJJIbOHUPPzK+CgwPwIgNc+hWShaT4OlVCd7XYFI
ft0dqwo3wBkvT7ffHVuFe6Y=
-----END CERTIFICATE-----
`;

/**
 * A listener CA file for unit tests: the program only reads it and copies it to
 * hosts. Removed when the test file ends (jest's afterAll of the caller).
 */
export function fakeListenerCaFile(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vault-rotation-unit-"));
    const file = path.join(dir, "listener-ca.pem");
    fs.writeFileSync(file, TEST_LISTENER_CA_PEM);
    if (typeof afterAll === "function") afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
    return file;
}

/** A stand-in for the secret `sshPrivateKey` of stacks that are only evaluated (not a usable key). */
export const TEST_SSH_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nTEST-SSH-KEY\n-----END OPENSSH PRIVATE KEY-----\n";

/** `Pulumi.prod.yaml` with the CA path pointed at a test file and its two secrets (seed data, ssh key) set. */
export function prodStack(caFile: string): Record<string, string> {
    const config = loadStackConfig(path.join(REPO_ROOT, "Pulumi.prod.yaml"));
    config["vault:caCertFile"] = caFile;
    config["vault-rotation:kvSeedData"] = JSON.stringify({ "app-a": { owner: "platform-team" } });
    config["vault-rotation:sshPrivateKey"] = TEST_SSH_PRIVATE_KEY;
    return config;
}

/**
 * `Pulumi.local.yaml` with its apps (names, users, homes, domains, agent CNs)
 * renamed `<prefix>-a` and `<prefix>-b`: integration files share one Vault,
 * whose roles, mappings and KV paths are named after the apps.
 */
export function renamedLocalStack(prefix: string): Record<string, string> {
    const local = loadStackConfig(path.join(REPO_ROOT, "Pulumi.local.yaml"));
    return Object.fromEntries(Object.entries(local).map(([k, v]) => [k, v.replace(/app-([ab])/g, `${prefix}-$1`).replace(/agent-([ab])\./g, `agent-${prefix}-$1.`)]));
}

export function localStack(caFile: string): Record<string, string> {
    const config = loadStackConfig(path.join(REPO_ROOT, "Pulumi.local.yaml"));
    config["vault:caCertFile"] = caFile;
    return config;
}

/** The structured form of the three-app stack, for tests that mutate it. */
export function threeAppStackObject(caFile: string) {
    return {
        "vault:address": "https://vault.test.internal:8200",
        "vault:caCertFile": caFile,
        "vault-rotation:rotation": { epoch: "e1", runInterval: "4h" },
        "vault-rotation:vault": { pkiMount: "pki/int", issuerCommonName: "Test Intermediate CA", certAuthPath: "cert-agents", kvMount: "kv" },
        "vault-rotation:sshPrivateKey": TEST_SSH_PRIVATE_KEY,
        "vault-rotation:kvSeedData": { web: { owner: "web-team" } },
        "vault-rotation:apps": [
            {
                name: "web",
                user: "web",
                home: "/srv/web",
                host: { local: true },
                agent: { commonName: "agent-web.test.internal", ttl: "48h", debugPolicy: true },
                leaf: { commonName: "web.internal", altNames: ["web.test.example.com"], allowedDomains: ["web.internal", "web.test.example.com"], ttl: "240h" },
                kv: { access: true, seed: true },
                reload: { label: "tls=true", proxy: "podman:edge" },
            },
            {
                name: "api",
                user: "api-svc",
                home: "/home/api-svc",
                host: { ssh: { host: "api-host.test.internal", port: 2222, hostKey: TEST_HOST_KEY } },
                agent: { commonName: "agent-api.test.internal", ttl: "24h", markerPolicy: false },
                leaf: { commonName: "api.internal", allowedDomains: ["api.internal"], ttl: "72h" },
                kv: { access: false },
                reload: { label: "app=api", signal: "SIGUSR1" },
            },
            {
                name: "jobs",
                user: "jobs",
                home: "/home/jobs",
                host: { local: true },
                agent: { commonName: "agent-jobs.test.internal", ttl: "72h" },
                leaf: { commonName: "jobs.internal", altNames: ["jobs.test.example.com"], allowedDomains: ["jobs.internal", "jobs.test.example.com"], ttl: "720h" },
                kv: { access: true, seed: false },
                reload: { label: "tls=true" },
            },
        ],
    };
}

export function threeAppStack(caFile: string): Record<string, string> {
    return flattenConfig(threeAppStackObject(caFile));
}

/** What the program reads from a stack's config (config.ts readRawStackInputs), from a structured stack object. */
export function rawStackInputs(stack: Record<string, unknown>): RawStackInputs {
    return {
        edge: stack["vault-rotation:edge"],
        rotation: stack["vault-rotation:rotation"],
        vault: stack["vault-rotation:vault"],
        apps: stack["vault-rotation:apps"],
        vaultAddress: stack["vault:address"],
        vaultCaCertFile: stack["vault:caCertFile"],
        hasSshPrivateKey: Boolean(stack["vault-rotation:sshPrivateKey"]),
        kvSeedData: stack["vault-rotation:kvSeedData"],
        namePrefix: stack["vault-rotation:namePrefix"],
    };
}

/**
 * The three-app stack as a stack file the rehearsal can run (`--stack <file>`):
 * web and jobs local, api on an ssh host on this machine's loopback address, with
 * the rehearsal Vault's PKI and KV mounts. Returns the file's path.
 */
export function writeThreeAppRehearsalStack(file: string): string {
    const stack = threeAppStackObject("/unused/ca.pem");
    const apps = (stack["vault-rotation:apps"] as Array<Record<string, unknown>>).map((a) =>
        a.name === "api" ? { ...a, host: { ssh: { host: "127.0.0.1", port: 22, hostKey: TEST_HOST_KEY } } } : { ...a, host: { local: true } },
    );
    const vault = { ...(stack["vault-rotation:vault"] as Record<string, string>), pkiMount: "pki_int", issuerCommonName: "Prod Intermediate CA", kvMount: "secret" };
    fs.writeFileSync(
        file,
        yaml.dump({
            config: {
                "vault:address": "https://127.0.0.1:8200",
                "vault:caCertFile": "/unused/ca.pem",
                "vault-rotation:rotation": { epoch: "three-1", runInterval: "4h", waitSeconds: 60, leafMinRemaining: "1h" },
                "vault-rotation:vault": vault,
                "vault-rotation:kvSeedData": stack["vault-rotation:kvSeedData"],
                "vault-rotation:sshPrivateKey": "replaced by the sandbox's sshd fixture key",
                "vault-rotation:apps": apps,
            },
        }),
    );
    return file;
}
