// Synthetic stacks of N apps for the benchmark (and anything else that needs a
// large valid stack): the flat `namespace:key -> string` map that
// evaluateProgram takes, with structured values JSON-encoded.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

/** A generated stack and the temp directory holding its listener CA file. */
export interface GeneratedStack {
    /** The flat config map (`vault-rotation:apps` etc. JSON-encoded). */
    config: Record<string, string>;
    /** Config keys a real stack holds as secrets (pass to evaluateProgram). */
    secretKeys: string[];
    /** Names of the generated apps, in order. */
    appNames: string[];
    /** Absolute path of the listener CA file (`vault:caCertFile`). */
    caFile: string;
    /** Removes the temp directory. Safe to call more than once. */
    cleanup: () => void;
}

/** `app-0001`, `app-0002`, ... (4 digits, wider only past 9999). */
export function appName(index: number): string {
    return `app-${String(index + 1).padStart(4, "0")}`;
}

// A real (throwaway, self-signed) certificate: vault:caCertFile must hold X.509 certificates only.
const LISTENER_CA_PEM = [
    "-----BEGIN CERTIFICATE-----",
    "MIIBjTCCATOgAwIBAgIUaa81Q25Wy2zzQVVF5ezhsiHTlqMwCgYIKoZIzj0EAwIw",
    "GzEZMBcGA1UEAwwQdGVzdC1saXN0ZW5lci1jYTAgFw0yNjEyMDExNzA0MDlaGA8y",
    "MTI2MTEwNzE3MDQwOVowGzEZMBcGA1UEAwwQdGVzdC1saXN0ZW5lci1jYTBZMBMG",
    "ByqGSM49AgEGCCqGSM49AwEHA0IABBOboZhzFAILJVmnlBMcOQJnUTR4uKsfMGoM",
    "eHazhNgYBgwrgDJVA2Vx7iNthL9Nu2mEAozEIutAb+SXKjtrO+GjUzBRMB0GA1Ud",
    "DgQWBBQE3mmVvf5T2ododrPdepl6kfkKgjAfBgNVHSMEGDAWgBQE3mmVvf5T2odo",
    "drPdepl6kfkKgjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQC7",
    "bqqU/aFHw9kAIUoYLZd9xipjXJJIbOHUPPzK+CgwPwIgNc+hWShaT4OlVCd7XYFI",
    "ft0dqwo3wBkvT7ffHVuFe6Y=",
    "-----END CERTIFICATE-----",
    "",
].join("\n");

/**
 * A valid stack of `count` apps: unique names, users, homes, agent CNs and leaf
 * domains; every host local; KV access for all, seeding on every other app
 * (`app-0001`, `app-0003`, ...), each seeded app with its `kvSeedData` entry.
 * Writes the listener CA file into a fresh temp directory.
 */
export function generateStack(count: number, opts: { epoch?: string; tmpRoot?: string } = {}): GeneratedStack {
    if (!Number.isInteger(count) || count < 1) throw new Error(`app count must be a positive integer (got ${count})`);
    const dir = fs.mkdtempSync(path.join(opts.tmpRoot ?? os.tmpdir(), "vault-rotation-bench-"));
    const caFile = path.join(dir, "listener-ca.pem");
    fs.writeFileSync(caFile, LISTENER_CA_PEM);

    const apps: Record<string, unknown>[] = [];
    const seedData: Record<string, Record<string, string>> = {};
    const appNames: string[] = [];
    for (let i = 0; i < count; i++) {
        const name = appName(i);
        const seed = i % 2 === 0;
        appNames.push(name);
        apps.push({
            name,
            user: name,
            home: `/home/${name}`,
            host: { local: true },
            agent: { commonName: `agent-${name}.bench.internal`, ttl: "72h", markerPolicy: true, debugPolicy: false },
            leaf: {
                commonName: `${name}.internal`,
                altNames: [`${name}.bench.example.com`],
                allowedDomains: [`${name}.internal`, `${name}.bench.example.com`],
                ttl: "720h",
            },
            kv: { access: true, seed },
            reload: { label: "tls=true" },
        });
        if (seed) seedData[name] = { owner: `${name}-team` };
    }

    const structured: Record<string, unknown> = {
        "vault:address": "https://vault.bench.internal:8200",
        "vault:caCertFile": caFile,
        "vault-rotation:rotation": { epoch: opts.epoch ?? "bench-1", runInterval: "12h", leafMinRemaining: "24h", waitSeconds: 120 },
        "vault-rotation:vault": { pkiMount: "pki_int", issuerCommonName: "Bench Intermediate CA", certAuthPath: "cert", kvMount: "secret" },
        "vault-rotation:apps": apps,
    };
    if (Object.keys(seedData).length > 0) structured["vault-rotation:kvSeedData"] = seedData;

    const config: Record<string, string> = {};
    for (const [k, v] of Object.entries(structured)) config[k] = typeof v === "string" ? v : JSON.stringify(v);

    return {
        config,
        secretKeys: "vault-rotation:kvSeedData" in config ? ["vault-rotation:kvSeedData"] : [],
        appNames,
        caFile,
        cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
    };
}
