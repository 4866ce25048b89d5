// Pulumi Deployments for the vault-rotation target stacks: one stack (`stack`) or a
// sharded fleet of stacks of the same project (`stacks`), each getting the same set of
// resources: where its source is and how a run is prepared (DeploymentSettings), the
// ESC environment the stack imports for its one Vault identity (Environment), how the
// guardrails pack is enforced (policyEnforcement: the Deployments load the
// repository's pack, prod's mode today, or a policy group, PolicyGroup, once the pack
// is publishable), the scheduled `pulumi up` that renews, rotates on an epoch change
// and verifies (DeploymentSchedule), drift detection (DriftSchedule) and the
// notifications of failed runs and drift (Webhook). A fleet's schedules can be
// staggered (`stagger`). Config is read and checked once, below, before any resource
// is registered.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
import * as pulumiservice from "@pulumi/pulumiservice";

const config = new pulumi.Config();
const NS = "vault-rotation-deploy";

/** A config value that must match `pattern`, with an error naming the key. */
function checked(key: string, value: string, pattern: RegExp, what: string): string {
    if (!pattern.test(value)) {
        throw new Error(`${NS}:${key} must be ${what}, got ${JSON.stringify(value)}`);
    }
    return value;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// Five cron fields (minute hour day-of-month month day-of-week).
const CRON = /^\s*\S+(\s+\S+){4}\s*$/;
// Scheme, host and optional port, no path: what vault-login's `address` accepts, and
// what the program's `vault:address` is.
const VAULT_URL = /^https:\/\/[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$/;

const organization = checked("organization", config.require("organization"), NAME, "a Pulumi organization name");
const project = checked("project", config.require("project"), NAME, "a Pulumi project name");
const repoUrl = checked("repoUrl", config.require("repoUrl"), /^https:\/\/\S+$/, "an https:// git URL");
const branch = checked("branch", config.require("branch"), /^[A-Za-z0-9._/-]+$/, "a git branch name");
const repoDir = config.get("repoDir") || ".";
const scheduleCron = checked("scheduleCron", config.require("scheduleCron"), CRON, "a 5-field cron expression");
const driftCron = checked("driftCron", config.require("driftCron"), CRON, "a 5-field cron expression");
const driftAutoRemediate = config.getBoolean("driftAutoRemediate") ?? false;
const agentPoolId = config.get("agentPoolId") || "";
const executorImage = config.get("executorImage") || "";
if (agentPoolId !== "") checked("agentPoolId", agentPoolId, /^[A-Za-z0-9-]+$/, "an agent pool id");
if (executorImage !== "") checked("executorImage", executorImage, /^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, "a container image reference");

// --- Vault, through ESC -------------------------------------------------------------
// The rotation program uses exactly one Vault identity per run: VAULT_TOKEN from its
// environment. In a Deployment (and for an operator's CLI run of the same stack) that
// variable comes from the ESC environment declared here, which the target stack
// imports: ESC logs in to Vault with its own OIDC token each time the environment is
// opened, so no resource input here holds a token or a JWT.
const vaultAddress = checked("vaultAddress", config.require("vaultAddress"), VAULT_URL, "an https:// URL with host and optional port, no path (the target stack's vault:address)");
// ESC performs the login from Pulumi Cloud, not from the runner, so it may need another
// address (one Pulumi Cloud can reach, with a publicly trusted certificate).
const vaultLoginAddress = checked(
    "vaultLoginAddress",
    config.get("vaultLoginAddress") || vaultAddress,
    VAULT_URL,
    "an https:// URL with host and optional port, no path, that Pulumi Cloud can reach",
);
const vaultJwtMount = checked("vaultJwtMount", config.get("vaultJwtMount") || "jwt", /^[A-Za-z0-9][A-Za-z0-9_-]*(\/[A-Za-z0-9_-]+)*$/, "a Vault auth mount path (e.g. jwt)");
// The default of every target stack that names no role of its own (stacks[i].vaultJwtRole).
const vaultJwtRole = checked("vaultJwtRole", config.require("vaultJwtRole"), NAME, "a Vault JWT role name");

/**
 * The certificate blocks of the Vault listener CA bundle named by `vaultCaCertFile`
 * (relative to this directory). Only the blocks are kept, so comments in the file stay
 * here; each must parse as an X.509 certificate, and a private key refuses the file.
 */
function readListenerCa(key: string, relative: string): string {
    checked(key, relative, /^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._/-]+$/, "a path relative to deploy/ (no leading / and no ..)");
    const file = path.join(__dirname, relative);
    let text: string;
    try {
        text = fs.readFileSync(file, "utf8");
    } catch (e) {
        throw new Error(`${NS}:${key}: cannot read ${relative}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    if (/PRIVATE KEY-----/.test(text)) {
        throw new Error(`${NS}:${key}: ${relative} contains a private key; it must hold only the listener's CA certificate(s)`);
    }
    const blocks = text.match(/-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----/g) ?? [];
    if (blocks.length === 0) {
        throw new Error(`${NS}:${key}: ${relative} holds no PEM certificate`);
    }
    for (const block of blocks) {
        let cert: crypto.X509Certificate;
        try {
            cert = new crypto.X509Certificate(block);
        } catch (e) {
            throw new Error(`${NS}:${key}: ${relative} has a certificate block that does not parse: ${(e as Error).message}`);
        }
        // The committed file is a stand-in until the real CA is put there: say so on every run.
        if (/PLACEHOLDER/.test(cert.subject)) {
            void pulumi.log.warn(`${NS}:${key}: ${relative} is still the placeholder CA (${cert.subject.replace(/\n/g, ", ")}); the target stack's Vault TLS checks will fail until it holds the real listener CA`);
        }
    }
    return blocks.map((b) => b.replace(/\r\n/g, "\n")).join("\n") + "\n";
}
const listenerCaPem = readListenerCa("vaultCaCertFile", config.require("vaultCaCertFile"));

// The app hosts' ssh key, handed to the target stack as its `vault-rotation:sshPrivateKey`
// config. Read as plain text only to check its shape here (before anything is
// registered, and without echoing it); it leaves this program only inside
// pulumi.secret(...), so it is encrypted in this stack's state. Unset: left out of the
// environment (the target stack then has it from its own config, or not at all). The
// top-level key is the default of every stack in `stacks` that sets none of its own.
const SSH_KEY = /^-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----\r?\n[\s\S]+\r?\n-----END ([A-Z0-9]+ )?PRIVATE KEY-----\s*$/;
function checkedSshKey(key: string, value: string): string {
    if (!SSH_KEY.test(value.trim() + "\n")) {
        const set = key.includes("[") ? `--path '${key}'` : key;
        throw new Error(`${NS}:${key} must be a PEM or OpenSSH private key (pulumi config set --secret ${set} < key); its value is not shown`);
    }
    return value;
}
const sshPrivateKey = config.get("sshPrivateKey") || undefined;
if (sshPrivateKey !== undefined) checkedSshKey("sshPrivateKey", sshPrivateKey);

// --- Target stacks ---------------------------------------------------------------
// `stack` names one target stack; `stacks` lists the stacks of a sharded fleet (the
// same project, each with its own namePrefix in its own stack file), each entry a
// stack name or an object that overrides, for that stack, the settings that are its
// own: its ESC environment's JWT role, the ssh key the environment hands over, and its
// crons. Everything else (source, runners, Vault address and CA, guardrails,
// notifications) is shared. Exactly one of the two keys is set: a stack file that sets
// both, or neither, fails naming them.
const PER_STACK = ["stack", "vaultJwtRole", "sshPrivateKey", "scheduleCron", "driftCron"] as const;

interface Target {
    stack: string;
    /** The config path of its entry, for errors: `stack` or `stacks[2]`. */
    at: string;
    /** The config path of its name: `stack`, `stacks[2]` (a bare name) or `stacks[2].stack`. */
    stackKey: string;
    vaultJwtRole: string;
    /** Where the role came from: `stacks[2].vaultJwtRole`, or the top-level default. */
    roleKey: string;
    sshPrivateKey: string | undefined;
    /** Its own crons, used as they are (not staggered); unset: the shared ones, staggered. */
    scheduleCron?: string;
    driftCron?: string;
}

/** What a JSON value is, for an error that must not show the value. */
function kindOf(value: unknown): string {
    if (value === null) return "null";
    if (Array.isArray(value)) return "a list";
    return typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/** The `stacks` list, parsed; [] when unset (Pulumi.yaml's default). Never echoed: an entry may hold an ssh key. */
function readStacksList(): unknown[] {
    const text = config.get("stacks");
    if (text === undefined || text.trim() === "") return [];
    let value: unknown;
    try {
        value = JSON.parse(text);
    } catch {
        value = undefined;
    }
    if (!Array.isArray(value)) {
        throw new Error(`${NS}:stacks must be a list (a YAML sequence) of stack names or {stack: <name>, ...} objects; its value is not shown (for one stack, set stack instead)`);
    }
    return value;
}

function targetFrom(entry: unknown, index: number): Target {
    const at = `stacks[${index}]`;
    if (typeof entry === "string") {
        return { stack: checked(at, entry, NAME, "a stack name"), at, stackKey: at, vaultJwtRole, roleKey: "vaultJwtRole", sshPrivateKey };
    }
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        throw new Error(`${NS}:${at} must be a stack name or an object {stack: <name>, ...}, got ${kindOf(entry)}`);
    }
    const fields = entry as Record<string, unknown>;
    for (const k of Object.keys(fields)) {
        if (!(PER_STACK as readonly string[]).includes(k)) {
            throw new Error(`${NS}:${at}.${k} is not a per-stack setting: an entry of stacks may set ${PER_STACK.join(", ")}; everything else is shared, set at the top level`);
        }
    }
    // Strings only; the type is named, never the value (sshPrivateKey is a secret).
    const text = (k: (typeof PER_STACK)[number]): string | undefined => {
        const v = fields[k];
        if (v !== undefined && typeof v !== "string") throw new Error(`${NS}:${at}.${k} must be a string, got ${kindOf(v)}`);
        return v;
    };
    const name = text("stack");
    if (name === undefined) throw new Error(`${NS}:${at}.stack is required: the name of the target stack`);
    const ownRole = text("vaultJwtRole");
    const ownKey = text("sshPrivateKey");
    const ownSchedule = text("scheduleCron");
    const ownDrift = text("driftCron");
    return {
        stack: checked(`${at}.stack`, name, NAME, "a stack name"),
        at,
        stackKey: `${at}.stack`,
        vaultJwtRole: ownRole !== undefined ? checked(`${at}.vaultJwtRole`, ownRole, NAME, "a Vault JWT role name") : vaultJwtRole,
        roleKey: ownRole !== undefined ? `${at}.vaultJwtRole` : "vaultJwtRole",
        // "" says: this stack's environment hands over no key, whatever the top-level one.
        sshPrivateKey: ownKey === undefined ? sshPrivateKey : ownKey === "" ? undefined : checkedSshKey(`${at}.sshPrivateKey`, ownKey),
        ...(ownSchedule !== undefined ? { scheduleCron: checked(`${at}.scheduleCron`, ownSchedule, CRON, "a 5-field cron expression") } : {}),
        ...(ownDrift !== undefined ? { driftCron: checked(`${at}.driftCron`, ownDrift, CRON, "a 5-field cron expression") } : {}),
    };
}

function readTargets(): Target[] {
    const single = config.get("stack") || "";
    const list = readStacksList();
    if (single !== "" && list.length > 0) {
        throw new Error(`${NS}:stack and ${NS}:stacks are both set: set stack for one target stack or stacks for a sharded fleet, not both`);
    }
    if (single === "" && list.length === 0) {
        throw new Error(`${NS}:stack or ${NS}:stacks must be set: the one target stack (stack: prod) or the list of the fleet's stacks (stacks: [prod-a, prod-b])`);
    }
    if (single !== "") {
        return [{ stack: checked("stack", single, NAME, "a stack name"), at: "stack", stackKey: "stack", vaultJwtRole, roleKey: "vaultJwtRole", sshPrivateKey }];
    }
    const found = list.map(targetFrom);
    found.forEach((t, i) => {
        const first = found.findIndex((o) => o.stack === t.stack);
        if (first < i) throw new Error(`${NS}:${t.stackKey}: ${JSON.stringify(t.stack)} is listed twice (also ${found[first].stackKey}); each target stack appears once`);
    });
    // Each environment logs in with a role whose bound_subject names that environment
    // (README.md, "One-time Vault setup"): a role shared by two environments would have
    // to admit both, and either stack could then act as the other.
    found.forEach((t, i) => {
        const first = found.findIndex((o) => o.vaultJwtRole === t.vaultJwtRole);
        if (first < i) {
            const from = (o: Target): string => (o.roleKey === "vaultJwtRole" ? `${o.at}, which names no vaultJwtRole and so uses the top-level vaultJwtRole` : o.roleKey);
            throw new Error(
                `${NS}:${t.at}.vaultJwtRole: ${t.stack} would log in with the Vault JWT role ${JSON.stringify(t.vaultJwtRole)} of ${found[first].stack} (${from(found[first])}; here ${from(t)}): each stack's environment needs its own role`,
            );
        }
    });
    return found;
}
const targets = readTargets();

// --- Staggering ----------------------------------------------------------------------
// stagger (a duration in whole minutes; "0", the default: none) shifts the shared crons
// of stacks[i] by i x stagger, so the fleet's runs do not all start at once (shared
// runners, one Vault). A stack with a cron of its own keeps it as it is.
const staggerText = (config.get("stagger") || "0").trim();
function staggerMinutes(text: string): number {
    if (text === "0") return 0;
    const m = /^(?:([0-9]{1,4})h)?(?:([0-9]{1,5})m)?$/.exec(text);
    if (m === null || (m[1] === undefined && m[2] === undefined)) {
        throw new Error(`${NS}:stagger must be a duration in whole minutes, e.g. 20m, 1h or 1h30m (0: every stack at the same time), got ${JSON.stringify(text)}`);
    }
    return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}
const stagger = staggerMinutes(staggerText);

function minutesText(minutes: number): string {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return h === 0 ? `${m}m` : m === 0 ? `${h}h` : `${h}h${m}m`;
}

/** The base cron's minute and hour, checked shiftable: a plain minute, and a plain hour or `*`. */
function shiftableFields(baseKey: string, cron: string): string[] {
    const fields = cron.trim().split(/\s+/);
    const refuse = (why: string): Error =>
        new Error(`${NS}:${baseKey} ${JSON.stringify(cron)} cannot be staggered (stagger ${staggerText}): ${why}; give each stack its own ${baseKey} in its stacks entry, or set stagger to 0`);
    if (!/^[0-9]{1,2}$/.test(fields[0]) || Number(fields[0]) > 59) throw refuse("its minute field must be one number, 0-59 (not a list, range, step or *)");
    if (fields[1] !== "*" && (!/^[0-9]{1,2}$/.test(fields[1]) || Number(fields[1]) > 23)) throw refuse("its hour field must be one number, 0-23, or * (not a list, range or step)");
    return fields;
}

/**
 * `cron` with its runs `shift` minutes later (less than the cron's period, checked by
 * the caller). Minutes carry into the hour and hours wrap at midnight; a shift into
 * the next day is refused unless every day field is `*` (the day fields would have
 * to move too, which a cron cannot say in general).
 */
function shiftedCron(baseKey: string, cron: string, shift: number, at: string): string {
    if (shift === 0) return cron;
    const [minute, hour, dom, month, dow] = shiftableFields(baseKey, cron);
    const total = (hour === "*" ? 0 : Number(hour) * 60) + Number(minute) + shift;
    const nextDay = hour === "*" ? Number(minute) + shift >= 60 : total >= 24 * 60;
    if (nextDay && [dom, month, dow].some((f) => f !== "*")) {
        throw new Error(
            `${NS}:${baseKey} ${JSON.stringify(cron)} cannot be staggered for ${at} (${minutesText(shift)} later): that moves runs past midnight into the next day, and its day fields are not all *; move the base time, or give ${at} its own ${baseKey}`,
        );
    }
    return [String(total % 60), hour === "*" ? "*" : String(Math.floor(total / 60) % 24), dom, month, dow].join(" ");
}

/** Each target's cron for `baseKey`: its own, or the shared one shifted by its index x stagger. */
function staggered(baseKey: "scheduleCron" | "driftCron", base: string): { crons: string[]; spread: number } {
    const shifts = targets.map((t, i) => (t[baseKey] === undefined ? i * stagger : 0));
    const spread = Math.max(...shifts);
    if (spread > 0) {
        const [, hour] = shiftableFields(baseKey, base);
        const period = hour === "*" ? 60 : 24 * 60;
        if (spread >= period) {
            const last = targets[shifts.indexOf(spread)];
            throw new Error(
                `${NS}:stagger ${staggerText} puts ${last.at} (${last.stack}) ${minutesText(spread)} after stacks[0], not less than the ${minutesText(period)} between two runs of ${baseKey} ${JSON.stringify(base)}: the last stacks would run into the next round`,
            );
        }
    }
    return { crons: targets.map((t, i) => t[baseKey] ?? shiftedCron(baseKey, base, shifts[i], t.at)), spread };
}
const updates = staggered("scheduleCron", scheduleCron);
const drifts = staggered("driftCron", driftCron);

// The promise each target stack makes (rotation.runInterval: the longest time between
// two runs its operators guarantee) is in its stack file. Where this checkout holds
// that file (deploy/ is at the repository root, the program in repoDir), the fleet's
// scheduled updates must not spread over more than it: otherwise the stagger itself,
// applied or reordered, can push a stack's run past it. A stack whose file is not here
// is not checked (test/unit/deploy.test.ts checks each committed one's cron gaps).
function promisedRunInterval(stack: string): { file: string; text: string; seconds: number } | undefined {
    const file = path.posix.join(path.posix.normalize(repoDir), `Pulumi.${stack}.yaml`);
    let doc: unknown;
    try {
        doc = yaml.load(fs.readFileSync(path.join(__dirname, "..", file), "utf8"));
    } catch {
        return undefined;
    }
    const rotation = (doc as { config?: Record<string, unknown> } | null)?.config?.[`${project}:rotation`];
    const text = (rotation as { runInterval?: unknown } | undefined)?.runInterval;
    if (typeof text !== "string" || !/^([0-9]+[smhd])+$/.test(text)) return undefined;
    const unit: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
    const seconds = [...text.matchAll(/([0-9]+)([smhd])/g)].reduce((sum, m) => sum + Number(m[1]) * unit[m[2]], 0);
    return { file, text, seconds };
}
if (updates.spread > 0) {
    for (const t of targets) {
        const promised = promisedRunInterval(t.stack);
        if (promised !== undefined && updates.spread * 60 > promised.seconds) {
            throw new Error(
                `${NS}:stagger ${staggerText} spreads the scheduled updates over ${minutesText(updates.spread)}, more than the rotation.runInterval ${promised.text} that ${promised.file} (${t.at}) promises`,
            );
        }
    }
}

// --- Notifications ------------------------------------------------------------------
// A failed scheduled update, a failed Deployment and detected drift must reach a person:
// a broken schedule would otherwise let agent certs lapse silently within their TTL.
// The URL of an incoming webhook is itself a credential (anyone holding it can post):
// checked here as text, never echoed, and registered only as a secret.
const notifyUrl = config.require("notifyUrl");
if (!/^https:\/\/[^\s/]+(\/\S*)?$/.test(notifyUrl)) {
    throw new Error(`${NS}:notifyUrl must be an https:// URL the notifications are posted to (pulumi config set --secret notifyUrl <url>); its value is not shown`);
}
const WEBHOOK_FORMATS = ["raw", "slack", "ms_teams"] as const;
const notifyFormat = config.get("notifyFormat") || "raw";
if (!(WEBHOOK_FORMATS as readonly string[]).includes(notifyFormat)) {
    throw new Error(`${NS}:notifyFormat must be one of ${WEBHOOK_FORMATS.join(", ")}, got ${JSON.stringify(notifyFormat)}`);
}
// Signs raw payloads (Pulumi-Webhook-Signature); a secret, read only to be passed on as one.
// Pulumi.yaml defaults it to "": none then.
const notifySecret = config.getSecret("notifySecret")?.apply((v) => (v === "" ? undefined : v));
if (/placeholder/i.test(notifyUrl)) {
    void pulumi.log.warn(`${NS}:notifyUrl is still the placeholder: failed runs and drift reach no one until it names a real destination`);
}

/** The ESC environment definition (YAML) the target stack imports. */
function environmentDefinition(sshKey: string | undefined, role: string): string {
    const pulumiConfig: Record<string, unknown> = { "vault:address": vaultAddress };
    if (sshKey !== undefined) pulumiConfig["vault-rotation:sshPrivateKey"] = { "fn::secret": sshKey };
    const values = {
        vault: {
            login: {
                // A fresh JWT login each time the environment is opened (every pulumi
                // up/preview/refresh/destroy and drift run). subjectAttributes puts this
                // environment's name in the token's `sub`, which the Vault role binds:
                // the default subject of an environment imported into a stack does not
                // name the environment.
                "fn::open::vault-login": {
                    address: vaultLoginAddress,
                    jwt: { mount: vaultJwtMount, role, subjectAttributes: ["currentEnvironment.name"] },
                },
            },
        },
        // Read by the program and by the vault provider plugin. The token is an
        // interpolation: ESC resolves it when the environment is opened.
        environmentVariables: { VAULT_ADDR: vaultAddress, VAULT_TOKEN: "${vault.login.token}" },
        // Written to a temporary file whose path is exported as VAULT_CACERT: the program
        // uses it when the stack sets no vault:caCertFile, so the runner needs no image
        // or mount that carries the CA.
        files: { VAULT_CACERT: listenerCaPem },
        pulumiConfig,
    };
    return yaml.dump({ values }, { lineWidth: -1, noRefs: true });
}

// --- Guardrails -----------------------------------------------------------------------
// "policyGroup" (the default, as in Pulumi.yaml): a Pulumi Cloud policy group (a paid
// edition's feature) puts the target stack under the published pack; it applies to
// every preview and update of the stack, wherever the CLI runs. It needs
// policyPackName and policyPackVersion, so a stack that names no mode and no pack fails
// below instead of quietly getting the weaker localPack.
// "localPack" (what Pulumi.prod.yaml sets today): no group; the Deployment's CLI loads
// the pack from the checked-out repository (PULUMI_OPTION_POLICY_PACK, CLI 3.208+), and
// operators' own runs must pass --policy-pack policy themselves. Prod cannot use a group
// yet: policy/package.json lists no dependencies (the pack resolves them from the
// repository root), so a published copy would not load and a mandatory group would fail
// every run of the stack.
const policyEnforcement = config.get("policyEnforcement") || "policyGroup";
if (policyEnforcement !== "policyGroup" && policyEnforcement !== "localPack") {
    throw new Error(`${NS}:policyEnforcement must be "policyGroup" or "localPack", got ${JSON.stringify(policyEnforcement)}`);
}
const policyPack =
    policyEnforcement === "policyGroup"
        ? {
              // Pulumi.yaml defaults both to "" (localPack needs neither): empty fails here.
              name: checked("policyPackName", config.get("policyPackName") || "", NAME, "a policy pack name (the name policy/index.ts gives `new PolicyPack`) when policyEnforcement is policyGroup"),
              versionTag: checked(
                  "policyPackVersion",
                  config.get("policyPackVersion") || "",
                  /^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$/,
                  "a published pack version (policy/package.json `version`) when policyEnforcement is policyGroup",
              ),
          }
        : undefined;
// The pack's directory relative to the program's (the Deployment runs the CLI there).
const localPolicyPackPath = path.posix.relative(path.posix.normalize(repoDir), "policy") || ".";

// --- Deployment settings -------------------------------------------------------------
// `npm ci` installs exactly the lockfile; the default install step is skipped so it
// does not run a second, unpinned install. It also links the dynamic providers' local
// package (@vault-rotation/providers), which the providers Pulumi runs load by name.
//
// No PULUMI_SKIP_CHECKPOINTS here, although the drift check is a preview: settings
// (and their environment variables) are per stack and also run the scheduled
// `pulumi up`, which must keep its per-step checkpoints (a crash mid-rotation must
// not lose the record of certs issued and revocations owed). Stacks are kept small
// instead (docs/OPERATIONS.md, "Sharding a large fleet").
//
// No Vault variable either: VAULT_TOKEN, VAULT_ADDR and VAULT_CACERT come from the ESC
// environment the stack imports, opened afresh by each operation.
const preRunCommands = ["npm ci"];
const environmentVariables: Record<string, string> = {
    // One app's failed step (a compromised app user can plant one in its own home) must
    // not keep every other app on its old credentials: the scheduled update goes on
    // with everything that does not depend on the failure, and still fails, naming it.
    PULUMI_CONTINUE_ON_ERROR: "true",
    // `pulumi up --refresh` for every update the settings run (the schedule included):
    // Vault objects changed or deleted out of band are read back first, so the same
    // update puts them back. PULUMI_OPTION_<FLAG> sets any CLI flag (Pulumi CLI 3.208.0+).
    PULUMI_OPTION_REFRESH: "true",
    // The repository's tsconfig lets ts-node skip the type check when the CLI runs the
    // program (seconds per run for an operator); the Deployment runs what is on the branch,
    // whether or not CI passed on it, so it type-checks first and stops on a type error
    // before any resource is touched.
    PULUMI_NODEJS_TRANSPILE_ONLY: "false",
};
if (policyEnforcement === "localPack") environmentVariables.PULUMI_OPTION_POLICY_PACK = localPolicyPackPath;

// --- Per target stack ------------------------------------------------------------
// The same resources for each target stack, named after it (`<project>-<stack>-...`):
// the names are unique across the fleet, and the names of a one-stack deploy are the
// ones it has always had, whichever key lists the stack (no component parent either,
// so the URNs are unchanged too: an upgrade neither deletes nor recreates anything).
interface Declared {
    targetStack: string;
    escEnvironment: string;
    vaultJwtRole: string;
    scheduleCron: string;
    driftCron: string;
    policyGroupName: pulumi.Output<string> | string;
    notificationWebhook: pulumi.Output<string>;
    deploymentScheduleId: pulumi.Output<string>;
    driftScheduleId: pulumi.Output<string>;
}

function declareTarget(t: Target, updateCron: string, driftScheduleCron: string): Declared {
    const stack = t.stack;
    const target = { organization, project, stack };
    const prefix = `${project}-${stack}`;

    const settings = new pulumiservice.DeploymentSettings(`${prefix}-deployment-settings`, {
        ...target,
        sourceContext: { git: { repoUrl, branch, repoDir } },
        operationContext: {
            preRunCommands,
            environmentVariables,
            options: { skipInstallDependencies: true },
        },
        ...(executorImage !== "" ? { executorContext: { executorImage } } : {}),
        ...(agentPoolId !== "" ? { agentPoolId } : {}),
    });

    // Named after the target stack, in the target's project: the stack file imports it as
    // `<project>/<stack>` (environment: [vault-rotation/prod]). With an ssh key in it, the
    // whole definition is a secret in this stack's state.
    const definition = environmentDefinition(t.sshPrivateKey, t.vaultJwtRole);
    const environment = new pulumiservice.Environment(`${prefix}-environment`, {
        organization,
        project,
        name: stack,
        yaml: t.sshPrivateKey !== undefined ? pulumi.secret(new pulumi.asset.StringAsset(definition)) : new pulumi.asset.StringAsset(definition),
    });

    const policyGroup = policyPack
        ? new pulumiservice.PolicyGroup(`${prefix}-policy-group`, {
              name: `${prefix}-guardrails`,
              organizationName: organization,
              entityType: "stacks",
              // Preventative: runs inside preview/up and blocks; "audit" would only report.
              mode: "preventative",
              stacks: [{ name: stack, routingProject: project }],
              // `all` sets every policy of the pack to mandatory, whatever the pack defaults to.
              policyPacks: [{ ...policyPack, config: { all: "mandatory" } }],
          })
        : undefined;

    // A schedule runs with the stack's deployment settings, imports the environment and,
    // in the policy-group mode, must not run before the group guards it: so it waits for all.
    const scheduleDependencies: pulumi.Resource[] = [settings, environment, ...(policyGroup ? [policyGroup] : [])];

    const rotationSchedule = new pulumiservice.DeploymentSchedule(
        `${prefix}-scheduled-update`,
        { ...target, scheduleCron: updateCron, pulumiOperation: pulumiservice.PulumiOperation.Update },
        { dependsOn: scheduleDependencies },
    );

    const driftSchedule = new pulumiservice.DriftSchedule(
        `${prefix}-drift-detection`,
        { ...target, scheduleCron: driftScheduleCron, autoRemediate: driftAutoRemediate },
        { dependsOn: scheduleDependencies },
    );

    // What must reach someone, for the target stack: its updates and Deployments failing
    // (the nightly run included) and drift detection finding a difference.
    const webhook = new pulumiservice.Webhook(`${prefix}-notifications`, {
        organizationName: organization,
        projectName: project,
        stackName: stack,
        displayName: `${prefix}: failed runs and drift`,
        payloadUrl: pulumi.secret(notifyUrl),
        format: notifyFormat as (typeof WEBHOOK_FORMATS)[number],
        active: true,
        filters: [
            pulumiservice.WebhookFilters.UpdateFailed,
            pulumiservice.WebhookFilters.RefreshFailed,
            pulumiservice.WebhookFilters.DeploymentFailed,
            pulumiservice.WebhookFilters.DriftDetected,
        ],
        ...(notifySecret !== undefined ? { secret: notifySecret } : {}),
    });

    return {
        targetStack: `${organization}/${project}/${stack}`,
        escEnvironment: `${project}/${stack}`,
        vaultJwtRole: t.vaultJwtRole,
        scheduleCron: updateCron,
        driftCron: driftScheduleCron,
        policyGroupName: policyGroup ? policyGroup.name : "(none: policyEnforcement localPack)",
        notificationWebhook: webhook.displayName,
        deploymentScheduleId: rotationSchedule.scheduleId,
        driftScheduleId: driftSchedule.scheduleId,
    };
}

const declared = targets.map((t, i) => declareTarget(t, updates.crons[i], drifts.crons[i]));

// One target stack: the outputs it has always had. Several: these are unset, and
// `stacks` says the same per stack.
const one = declared.length === 1 ? declared[0] : undefined;
export const targetStack = one?.targetStack;
export const notificationWebhook = one?.notificationWebhook;
/** What the target stack's `environment:` list names. */
export const escEnvironment = one?.escEnvironment;
export const policyGroupName = one?.policyGroupName;
export const deploymentScheduleId = one?.deploymentScheduleId;
export const driftScheduleId = one?.driftScheduleId;
/** Per target stack (keyed by its name): the above, its JWT role and its effective crons. */
export const stacks = pulumi.output(Object.fromEntries(targets.map((t, i) => [t.stack, declared[i]])));
