// The stack-config contract: valid stacks parse; every invalid one fails before
// any resource is registered, with a line naming the key path.
import { ConfigError, durationSeconds, renewBeforeSeconds, resolveEpoch, stepTimeoutSeconds, validateStackInputs } from "../../config";
import { evaluateProgram, ProgramFailure, flattenConfig } from "../support/harness";
import { fakeListenerCaFile, localStack, prodStack, rawStackInputs, TEST_HOST_KEY, TEST_LISTENER_CA_PEM, threeAppStackObject } from "../support/stacks";

const caFile = fakeListenerCaFile();
const EC_KEY = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKNEu9oDq9hH2V8aQgiYEPwopOyDyJ98l89Jb+j6a6OxxTItDWAyhUOI8ROlG8q18ty//sfHXpScMlzDcmD9cCM=";
const readCa = () => TEST_LISTENER_CA_PEM;

function problemsOf(mutate: (s: ReturnType<typeof threeAppStackObject>) => void): string[] {
    const stack = threeAppStackObject(caFile);
    mutate(stack);
    try {
        validateStackInputs(rawStackInputs(stack), readCa);
    } catch (e) {
        if (e instanceof ConfigError) return e.problems;
        throw e;
    }
    return [];
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Apps = any[];

const EDGE = { listen: "edge.internal:443", serverName: "edge.test.internal", reload: "podman:edge-proxy", user: "edge", home: "/srv/edge", bundle: "/srv/edge/tls/ca.pem", host: { local: true } };

describe("valid stacks", () => {
    it("accepts equal homes on different hosts, and a host PATH", () => {
        const problems = problemsOf((s) => {
            const apps = s["vault-rotation:apps"] as Apps;
            apps[1].home = "/srv/web"; // api is on its own ssh host
            apps[0].host = { local: true, path: "/opt/vault/bin:/usr/bin:/bin" };
        });
        expect(problems).toEqual([]);
    });


    it("accepts an ssh host whose user is the app's own user, and an ecdsa pin", () => {
        const problems = problemsOf((s) => {
            const apps = s["vault-rotation:apps"] as Apps;
            apps[1].host.ssh.user = "api-svc";
            apps[1].host.ssh.hostKey = EC_KEY;
        });
        expect(problems).toEqual([]);
    });

    it("accepts a run interval exactly one margin inside the shortest renewal window", () => {
        // api: ttl 24h, renewed 8h before expiry; 6h interval + 1h margin = 7h fits, 7h + 1h45m does not.
        expect(problemsOf((s) => (s["vault-rotation:rotation"].runInterval = "6h"))).toEqual([]);
        expect(problemsOf((s) => (s["vault-rotation:rotation"].runInterval = "7h"))).toEqual([
            expect.stringMatching(/^rotation\.runInterval: apps\[1\]\.agent\.ttl 24h is renewed 28800s before expiry/),
        ]);
    });

    it("accepts the three-app stack and applies defaults", () => {
        const { config, listenerCaPem } = validateStackInputs(rawStackInputs(threeAppStackObject(caFile)), readCa);
        expect(listenerCaPem).toContain("BEGIN CERTIFICATE");
        expect(config.apps.map((a) => a.name)).toEqual(["web", "api", "jobs"]);
        expect(config.apps[0].agent.markerPolicy).toBe(true);
        expect(config.apps[1].agent.debugPolicy).toBe(false);
        expect(config.apps[2].reload.signal).toBe("SIGHUP");
        expect(config.apps[1].kv).toEqual({ access: false, seed: false });
        expect(config.rotation.waitSeconds).toBe(120);
        expect(config.apps[1].host).toEqual({ ssh: { host: "api-host.test.internal", port: 2222, hostKey: TEST_HOST_KEY } });
    });

    it.each([
        ["prod", () => prodStack(caFile)],
        ["local", () => localStack(caFile)],
    ])("accepts the committed %s stack", (_name, get) => {
        const flat = get();
        const parse = (k: string) => (flat[k] === undefined ? undefined : JSON.parse(flat[k]));
        const { config } = validateStackInputs(
            {
                rotation: parse("vault-rotation:rotation"),
                vault: parse("vault-rotation:vault"),
                apps: parse("vault-rotation:apps"),
                vaultAddress: flat["vault:address"],
                vaultCaCertFile: flat["vault:caCertFile"],
                hasSshPrivateKey: (flat["vault-rotation:sshPrivateKey"] ?? "") !== "",
                kvSeedData: parse("vault-rotation:kvSeedData"),
            },
            readCa,
        );
        expect(config.apps.map((a) => a.name)).toEqual(["app-a", "app-b"]);
        expect(config.apps.filter((a) => a.kv.seed)).toHaveLength(1);
    });
});

describe("invalid stacks name the key", () => {
    const cases: [string, (s: ReturnType<typeof threeAppStackObject>) => void, RegExp][] = [
        ["bad app name", (s) => ((s["vault-rotation:apps"] as Apps)[1].name = "Api;rm -rf /"), /^apps\[1\]\.name: must match/],
        ["duplicate app name", (s) => ((s["vault-rotation:apps"] as Apps)[2].name = "web"), /^apps\[2\]\.name: duplicate "web", already used by apps\[0\]/],
        ["bad user", (s) => ((s["vault-rotation:apps"] as Apps)[0].user = "root user"), /^apps\[0\]\.user: must match/],
        ["relative home", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "home/web"), /^apps\[0\]\.home: must be an absolute path/],
        ["home with ..", (s) => ((s["vault-rotation:apps"] as Apps)[2].home = "/home/../etc"), /^apps\[2\]\.home: must not contain '\.' or '\.\.' segments/],
        ["duplicate agent CN", (s) => ((s["vault-rotation:apps"] as Apps)[2].agent.commonName = "agent-web.test.internal"), /^apps\[2\]\.agent\.commonName: duplicate/],
        ["agent CN not a DNS name", (s) => ((s["vault-rotation:apps"] as Apps)[0].agent.commonName = "agent web"), /^apps\[0\]\.agent\.commonName: must be a lowercase DNS name/],
        ["wildcard domain", (s) => ((s["vault-rotation:apps"] as Apps)[1].leaf.allowedDomains[0] = "*.internal"), /^apps\[1\]\.leaf\.allowedDomains\[0\]: must not be a wildcard/],
        ["IP domain", (s) => ((s["vault-rotation:apps"] as Apps)[0].leaf.allowedDomains[1] = "10.0.0.1"), /^apps\[0\]\.leaf\.allowedDomains\[1\]: must not be an IP address/],
        ["localhost domain", (s) => ((s["vault-rotation:apps"] as Apps)[0].leaf.altNames = ["localhost"]), /^apps\[0\]\.leaf\.altNames\[0\]: must not be localhost/],
        ["domain with newline", (s) => ((s["vault-rotation:apps"] as Apps)[2].leaf.allowedDomains[0] = "jobs.internal\nrm"), /^apps\[2\]\.leaf\.allowedDomains\[0\]: must be a lowercase DNS name/],
        ["CN outside allowedDomains", (s) => ((s["vault-rotation:apps"] as Apps)[0].leaf.commonName = "other.internal"), /^apps\[0\]\.leaf\.commonName: other\.internal is not in leaf\.allowedDomains/],
        ["altName outside allowedDomains", (s) => ((s["vault-rotation:apps"] as Apps)[2].leaf.altNames = ["jobs.internal", "evil.example.com"]), /^apps\[2\]\.leaf\.altNames\[1\]: evil\.example\.com is not in leaf\.allowedDomains/],
        ["agent TTL of months", (s) => ((s["vault-rotation:apps"] as Apps)[0].agent.ttl = "2160h"), /^apps\[0\]\.agent\.ttl: agent\.ttl must be between/],
        ["TTL not a duration", (s) => ((s["vault-rotation:apps"] as Apps)[1].leaf.ttl = "30 days"), /^apps\[1\]\.leaf\.ttl: must be a Vault duration/],
        ["label with quotes", (s) => ((s["vault-rotation:apps"] as Apps)[0].reload.label = "tls='true'"), /^apps\[0\]\.reload\.label: must be key=value without whitespace or quotes/],
        ["label with whitespace", (s) => ((s["vault-rotation:apps"] as Apps)[0].reload.label = "tls = true"), /^apps\[0\]\.reload\.label:/],
        ["proxy not podman", (s) => ((s["vault-rotation:apps"] as Apps)[0].reload.proxy = "docker:edge"), /^apps\[0\]\.reload\.proxy: must be podman:<container-name>/],
        ["bad mount", (s) => ((s["vault-rotation:vault"] as Record<string, string>).pkiMount = "pki int/../x"), /^vault\.pkiMount: must match/],
        ["mount with trailing slash", (s) => ((s["vault-rotation:vault"] as Record<string, string>).kvMount = "kv/"), /^vault\.kvMount: must match/],
        ["no epoch and no schedule", (s) => (s["vault-rotation:rotation"] = { runInterval: "4h" } as { epoch: string; runInterval: string }), /^rotation: set rotation\.epoch, rotation\.every, or both/],
        ["plain-http address", (s) => (s["vault:address"] = "http://vault:8200"), /^vault:address: must be https/],
        ["unknown key", (s) => ((s["vault-rotation:apps"] as Apps)[0].agent.debug = true), /^apps\[0\]\.agent: Unrecognized key/i],
        ["ssh host without key", (s) => (s["vault-rotation:sshPrivateKey"] = ""), /^vault-rotation:sshPrivateKey: required \(secret\) because apps\[1\]\.host\.ssh is set/],
        ["seed without data", (s) => (s["vault-rotation:kvSeedData"] = {} as { web: { owner: string } }), /^vault-rotation:kvSeedData\.web: apps\[0\]\.kv\.seed is true/],
        ["seed without access", (s) => ((s["vault-rotation:apps"] as Apps)[1].kv = { access: false, seed: true }), /^apps\[1\]\.kv\.seed: seeding needs kv\.access: true/],
        // The host boundary: one app must gain nothing over another, or over the host.
        ["two apps sharing a home", (s) => ((s["vault-rotation:apps"] as Apps)[2].home = "/srv/web"), /^apps\[2\]\.home: \/srv\/web is also apps\[0\]\.home/],
        ["a home nested in another app's home", (s) => ((s["vault-rotation:apps"] as Apps)[2].home = "/srv/web/jobs"), /^apps\[2\]\.home: \/srv\/web\/jobs and apps\[0\]\.home \(\/srv\/web\) are nested/],
        ["a home containing another app's home", (s) => ((s["vault-rotation:apps"] as Apps)[2].home = "/srv"), /^apps\[2\]\.home: \/srv and apps\[0\]\.home \(\/srv\/web\) are nested/],
        [
            "another app's domain in allowedDomains",
            (s) => ((s["vault-rotation:apps"] as Apps)[2].leaf.allowedDomains.push("web.internal")),
            /^apps\[2\]\.leaf\.allowedDomains\[2\]: web\.internal is also in apps\[0\]\.leaf\.allowedDomains: one app's agent could issue the other's frontend certificate/,
        ],
        [
            "an agent CN in a leaf's allowedDomains",
            (s) => ((s["vault-rotation:apps"] as Apps)[2].leaf.allowedDomains.push("agent-web.test.internal")),
            /^apps\[2\]\.leaf\.allowedDomains\[2\]: agent-web\.test\.internal is apps\[0\]\.agent\.commonName/,
        ],
        ["user root", (s) => ((s["vault-rotation:apps"] as Apps)[0].user = "root"), /^apps\[0\]\.user: must not be root/],
        ["home /etc", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "/etc"), /^apps\[0\]\.home: must not be under \/etc \(a system directory\)/],
        ["home under /var/lib", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "/var/lib/web"), /^apps\[0\]\.home: must not be under \/var\/lib/],
        ["home under /lib64", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "/lib64/web"), /^apps\[0\]\.home: must not be under \/lib64/],
        ["home under /root", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "/root/web"), /^apps\[0\]\.home: must not be under \/root/],
        ["home /usr/local/web", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "/usr/local/web"), /^apps\[0\]\.home: must not be under \/usr/],
        ["home /run/web", (s) => ((s["vault-rotation:apps"] as Apps)[0].home = "/run/web"), /^apps\[0\]\.home: must not be under \/run/],
        ["serve endpoint without a port", (s) => ((s["vault-rotation:apps"] as Apps)[0].serve = { endpoint: "web.internal" }), /^apps\[0\]\.serve\.endpoint: must be host:port/],
        ["serve endpoint with port 0", (s) => ((s["vault-rotation:apps"] as Apps)[0].serve = { endpoint: "web.internal:0" }), /^apps\[0\]\.serve\.endpoint: port must be 1-65535/],
        ["edge user shared with an app", (s) => ((s as Record<string, unknown>)["vault-rotation:edge"] = { ...EDGE, user: "web" }), /^edge\.user: web is also apps\[0\]\.user/],
        ["edge home nested in an app's", (s) => ((s as Record<string, unknown>)["vault-rotation:edge"] = { ...EDGE, home: "/srv/web/edge", bundle: "/srv/web/edge/ca.pem" }), /^edge\.home: \/srv\/web\/edge and apps\[0\]\.home \(\/srv\/web\) are equal or nested/],
        ["edge bundle outside its home", (s) => ((s as Record<string, unknown>)["vault-rotation:edge"] = { ...EDGE, bundle: "/etc/nginx/ca.pem" }), /^edge\.bundle: must be a normalised path inside edge\.home/],
        // Principals that would collide (issue: trust boundaries, round 2).
        ["two apps with one Unix user on one host", (s) => ((s["vault-rotation:apps"] as Apps)[2].user = "web"), /^apps\[2\]\.user: web is also apps\[0\]\.user on the same host/],
        [
            "one home for a local app and an ssh app on a loopback address",
            (s) => {
                const apps = s["vault-rotation:apps"] as Apps;
                apps[1].host.ssh.host = "127.0.0.2";
                apps[1].home = "/srv/web";
            },
            /^apps\[1\]\.home: \/srv\/web is also apps\[0\]\.home/,
        ],
        [
            "a leaf domain that is the edge's own name",
            (s) => {
                (s as Record<string, unknown>)["vault-rotation:edge"] = EDGE;
                (s["vault-rotation:apps"] as Apps)[2].leaf.allowedDomains.push("edge.test.internal");
            },
            /^apps\[2\]\.leaf\.allowedDomains\[2\]: edge\.test\.internal is edge\.serverName/,
        ],
        ["a leaf domain that is Vault's listener", (s) => ((s["vault-rotation:apps"] as Apps)[0].leaf.allowedDomains.push("vault.test.internal")), /^apps\[0\]\.leaf\.allowedDomains\[2\]: vault\.test\.internal is the host of vault:address/],
        [
            "an edge host that is another app's domain",
            (s) => ((s["vault-rotation:apps"] as Apps)[2].serve = { endpoint: "jobs.internal:8443", edgeHost: "web.test.example.com" }),
            /^apps\[2\]\.serve\.edgeHost: web\.test\.example\.com is in apps\[0\]\.leaf\.allowedDomains/,
        ],
        ["a step time limit shorter than the render wait", (s) => (s["vault-rotation:rotation"] = { ...s["vault-rotation:rotation"], waitSeconds: 120, stepTimeoutSeconds: 100 } as typeof s["vault-rotation:rotation"]), /^rotation\.stepTimeoutSeconds: must leave the rotate step its rotation\.waitSeconds plus 30s/],
        ["a serve path that is not a URL path", (s) => ((s["vault-rotation:apps"] as Apps)[2].serve = { endpoint: "jobs.internal:8443", path: "healthz?x=1" }), /^apps\[2\]\.serve\.path: must be an absolute URL path/],
        ["edge reload not podman", (s) => ((s as Record<string, unknown>)["vault-rotation:edge"] = { ...EDGE, reload: "systemd:nginx" }), /^edge\.reload: must be podman:<container-name>/],
        // Remote hosts: a pinned key, the app user itself, runs that can never let an agent cert lapse.
        ["ssh host without a pinned key", (s) => delete (s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey, /^apps\[1\]\.host\.ssh\.hostKey: Invalid input: expected string/],
        ["pinned key with the host name in front (raw ssh-keyscan line)", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey = `api-host ${TEST_HOST_KEY}`), /^apps\[1\]\.host\.ssh\.hostKey: must be one line '<type> <base64>'/],
        ["pinned key with a comment", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey = `${TEST_HOST_KEY} root@api-host`), /^apps\[1\]\.host\.ssh\.hostKey: must be one line/],
        ["pinned key of an unknown type", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey = "ssh-dss AAAAB3NzaC1kc3M="), /^apps\[1\]\.host\.ssh\.hostKey: key type ssh-dss is not one of ssh-ed25519, ecdsa-sha2-nistp256/],
        ["pinned key whose blob is another type", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey = `ssh-ed25519 ${EC_KEY.split(" ")[1]}`), /^apps\[1\]\.host\.ssh\.hostKey: the base64 part is not a ssh-ed25519 public key \(it names "ecdsa-sha2-nistp256"\)/],
        ["truncated pinned key", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey = TEST_HOST_KEY.slice(0, -8)), /^apps\[1\]\.host\.ssh\.hostKey: the base64 part is not a complete ssh-ed25519 key/],
        ["pinned key with a newline", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.hostKey = `${TEST_HOST_KEY}\nssh-ed25519 AAAA`), /^apps\[1\]\.host\.ssh\.hostKey: must be one line/],
        ["ssh user other than the app user", (s) => ((s["vault-rotation:apps"] as Apps)[1].host.ssh.user = "deploy"), /^apps\[1\]\.host\.ssh\.user: must be this app's user api-svc \(got deploy\): the runner logs in as the app user itself/],
        [
            "two pins for one ssh host",
            (s) => ((s["vault-rotation:apps"] as Apps)[2].host = { ssh: { host: "API-host.test.internal", port: 2222, hostKey: EC_KEY } }),
            /^apps\[2\]\.host\.ssh\.hostKey: differs from apps\[1\]\.host\.ssh\.hostKey for the same host API-host\.test\.internal port 2222/,
        ],
        ["no run interval", (s) => delete (s["vault-rotation:rotation"] as Partial<{ runInterval: string }>).runInterval, /^rotation\.runInterval: Invalid input: expected string/],
        [
            "weekly runs for 72h agent certs (the old prod stack)",
            (s) => (s["vault-rotation:rotation"].runInterval = "168h"),
            /^rotation\.runInterval: apps\[2\]\.agent\.ttl 72h is renewed 86400s before expiry \(a third of apps\[2\]\.agent\.ttl, the default of rotation\.renewBeforeSeconds\), but runs may be 168h apart: the agent cert could lapse between runs\. Renewal must start at least rotation\.runInterval \+ 151200s margin = 756000s before expiry/,
        ],
        [
            "an explicit renewal window shorter than interval + margin",
            (s) => Object.assign(s["vault-rotation:rotation"], { runInterval: "2h", renewBeforeSeconds: 10000 }),
            /^rotation\.runInterval: apps\[0\]\.agent\.ttl 48h is renewed 10000s before expiry \(rotation\.renewBeforeSeconds\).*at least rotation\.runInterval \+ 3600s margin = 10800s/,
        ],
        [
            "a renewal window as long as the TTL",
            (s) => Object.assign(s["vault-rotation:rotation"], { renewBeforeSeconds: 86400 }),
            /^rotation\.renewBeforeSeconds: must be below apps\[1\]\.agent\.ttl \(24h\), or every run would renew/,
        ],
        ["host PATH with a relative entry", (s) => ((s["vault-rotation:apps"] as Apps)[0].host = { local: true, path: "/usr/bin:bin" }), /^apps\[0\]\.host/],
    ];

    it.each(cases)("%s", (_name, mutate, expected) => {
        const problems = problemsOf(mutate);
        expect(problems.some((p) => expected.test(p))).toBe(true);
    });

    it("reports every problem at once, one line each", () => {
        const problems = problemsOf((s) => {
            (s["vault-rotation:apps"] as Apps)[0].name = "BAD";
            (s["vault-rotation:apps"] as Apps)[1].leaf.allowedDomains[0] = "*.x";
            (s["vault-rotation:vault"] as Record<string, string>).certAuthPath = "cert auth";
        });
        expect(problems).toEqual(
            expect.arrayContaining([
                expect.stringMatching(/^apps\[0\]\.name:/),
                expect.stringMatching(/^apps\[1\]\.leaf\.allowedDomains\[0\]:/),
                expect.stringMatching(/^vault\.certAuthPath:/),
            ]),
        );
    });

    it("takes the CA file from VAULT_CACERT when vault:caCertFile is unset, and names whichever it read", () => {
        const stack = threeAppStackObject(caFile) as Record<string, unknown>;
        delete stack["vault:caCertFile"];
        const read: string[] = [];
        const reading = (p: string) => {
            read.push(p);
            return TEST_LISTENER_CA_PEM;
        };
        const loaded = validateStackInputs({ ...rawStackInputs(stack as ReturnType<typeof threeAppStackObject>), vaultCaCertEnv: "/tmp/esc-1234/VAULT_CACERT" }, reading);
        expect(read).toEqual(["/tmp/esc-1234/VAULT_CACERT"]);
        expect(loaded.config.vault.caCertFile).toBeUndefined();
        expect(loaded.listenerCaPem).toBe(TEST_LISTENER_CA_PEM);
        // The stack's own file wins.
        read.length = 0;
        validateStackInputs({ ...rawStackInputs(threeAppStackObject(caFile)), vaultCaCertEnv: "/tmp/esc-1234/VAULT_CACERT" }, reading);
        expect(read).toEqual([caFile]);
        expect(() => validateStackInputs({ ...rawStackInputs(stack as ReturnType<typeof threeAppStackObject>), vaultCaCertEnv: "/tmp/x" }, () => "")).toThrow(
            "VAULT_CACERT: /tmp/x holds no PEM certificate",
        );
        expect(() => validateStackInputs(rawStackInputs(stack as ReturnType<typeof threeAppStackObject>), reading)).toThrow(
            /vault:caCertFile: required: the PEM bundle that verifies Vault's listener .*or export VAULT_CACERT/,
        );
    });

    it("refuses the removed vault.jwtAuth with what to do instead", () => {
        const problems = problemsOf((s) => ((s["vault-rotation:vault"] as Record<string, unknown>).jwtAuth = { mount: "jwt", role: "deploy" }));
        expect(problems).toEqual([expect.stringMatching(/^vault\.jwtAuth: is no longer read: a Pulumi Deployment gets VAULT_TOKEN from the stack's ESC environment/)]);
    });

    it("refuses an app hook that would reload the edge proxy's container from the app user's podman", () => {
        const problems = problemsOf((s) => {
            (s as Record<string, unknown>)["vault-rotation:edge"] = EDGE;
            (s["vault-rotation:apps"] as Apps)[0].reload.proxy = "podman:edge-proxy";
        });
        expect(problems).toEqual([
            "apps[0].reload.proxy: podman:edge-proxy is edge.reload: the edge proxy runs as edge, and this app's hook (run as web) cannot reach that user's podman; remove it (the edge needs no reload for a new app leaf)",
        ]);
        // A proxy container of the app's own is fine.
        expect(problemsOf((s) => {
            (s as Record<string, unknown>)["vault-rotation:edge"] = EDGE;
            (s["vault-rotation:apps"] as Apps)[0].reload.proxy = "podman:web-sidecar";
        })).toEqual([]);
    });

    it("names an unreadable CA file", () => {
        const stack = threeAppStackObject("/nonexistent/ca.pem");
        expect(() =>
            validateStackInputs(rawStackInputs(stack), () => {
                throw new Error("ENOENT");
            }),
        ).toThrow(/vault:caCertFile: cannot read \/nonexistent\/ca\.pem: ENOENT/);
    });

    it.each([
        ["a private key beside the certificate", `${TEST_LISTENER_CA_PEM}-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB\n-----END EC PRIVATE KEY-----\n`, "holds a EC PRIVATE KEY block: it must hold certificates only (never a key)"],
        ["a CERTIFICATE block that is not one", "-----BEGIN CERTIFICATE-----\nTUlJQm5vdCBhIGNlcnQ=\n-----END CERTIFICATE-----\n", "holds a CERTIFICATE block (number 1) that is not an X.509 certificate"],
        ["a bare key", "MHcCAQEEIBkeyTEXT\n", "holds text outside its PEM certificate blocks: it must hold certificates only"],
        ["nothing", "", "holds no PEM certificate"],
    ])("refuses a CA file holding %s, naming the file", (_what, text, problem) => {
        const stack = threeAppStackObject("/etc/vault-rotation/ca.pem");
        expect(() => validateStackInputs(rawStackInputs(stack), () => text)).toThrow(`vault:caCertFile: /etc/vault-rotation/ca.pem ${problem}`);
    });

    it.each([
        ["wildcard", (s: ReturnType<typeof threeAppStackObject>) => ((s["vault-rotation:apps"] as Apps)[1].leaf.allowedDomains[0] = "*.internal"), "apps[1].leaf.allowedDomains[0]"],
        ["duplicate name", (s: ReturnType<typeof threeAppStackObject>) => ((s["vault-rotation:apps"] as Apps)[2].name = "web"), "apps[2].name"],
        ["missing CA file", (s: ReturnType<typeof threeAppStackObject>) => (s["vault:caCertFile"] = "/nonexistent/listener-ca.pem"), "vault:caCertFile"],
    ])("the program itself fails on a %s and registers nothing", async (_n, mutate, key) => {
        const stack = threeAppStackObject(caFile);
        mutate(stack);
        const failure = await evaluateProgram({ config: flattenConfig(stack) }).then(
            () => undefined,
            (e: unknown) => e,
        );
        expect(failure).toBeInstanceOf(ProgramFailure);
        expect((failure as ProgramFailure).message).toContain(key);
        expect((failure as ProgramFailure).registrations).toEqual([]);
    });
});

describe("rotation epoch and renewal", () => {
    const HOUR = 3600 * 1000;
    const t0 = new Date("2026-11-27T10:00:00Z");

    it("uses an explicit epoch as is", () => {
        expect(resolveEpoch({ epoch: "2026-11-27", runInterval: "24h", leafMinRemaining: "24h", waitSeconds: 120 }, t0)).toEqual({ epoch: "2026-11-27", source: "explicit" });
    });

    it("derives a stable epoch within a bucket and a new one when it turns", () => {
        const rotation = { every: "720h", runInterval: "24h", leafMinRemaining: "24h", waitSeconds: 120 };
        const a = resolveEpoch(rotation, t0);
        const b = resolveEpoch(rotation, new Date(t0.getTime() + 5 * HOUR));
        expect(a.source).toBe("schedule");
        expect(b.epoch).toBe(a.epoch);
        const next = resolveEpoch(rotation, new Date(a.nextRotation!));
        expect(next.epoch).not.toBe(a.epoch);
        expect(next.bucketStart).toBe(a.nextRotation);
        expect(new Date(a.bucketStart!).getTime()).toBeLessThanOrEqual(t0.getTime());
    });

    it("lets an explicit epoch win over the schedule", () => {
        const d = resolveEpoch({ epoch: "emergency-1", every: "720h", runInterval: "24h", leafMinRemaining: "24h", waitSeconds: 120 }, t0);
        expect(d.epoch).toBe("emergency-1");
        expect(d.source).toBe("explicit");
        expect(d.nextRotation).toBeDefined();
    });

    it("limits each host step to waitSeconds + 120s unless configured", () => {
        const { config } = validateStackInputs(rawStackInputs(threeAppStackObject(caFile)), readCa);
        expect(stepTimeoutSeconds(config.rotation)).toBe(config.rotation.waitSeconds + 120);
        expect(stepTimeoutSeconds({ ...config.rotation, stepTimeoutSeconds: 900 })).toBe(900);
    });

    it("renews an agent cert a third of its TTL before expiry unless configured", () => {
        const { config } = validateStackInputs(rawStackInputs(threeAppStackObject(caFile)), readCa);
        expect(renewBeforeSeconds(config.rotation, config.apps[0])).toBe(16 * 3600);
        expect(renewBeforeSeconds({ ...config.rotation, renewBeforeSeconds: 600 }, config.apps[0])).toBe(600);
        expect(durationSeconds("1h30m")).toBe(5400);
    });
});
