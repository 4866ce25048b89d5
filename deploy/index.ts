// Pulumi Deployments for the vault-rotation target stack: where its source is and
// how a run is prepared (DeploymentSettings), the ESC environment the target stack
// imports for its one Vault identity (Environment), how the guardrails pack is
// enforced (policyEnforcement: the Deployments load the repository's pack, prod's mode
// today, or a policy group, PolicyGroup, once the pack is publishable), the scheduled
// `pulumi up` that renews, rotates on an epoch change and verifies
// (DeploymentSchedule), and drift detection (DriftSchedule). Config is read and
// checked once, below, before any resource is registered.
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
const stack = checked("stack", config.require("stack"), NAME, "a stack name");
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
// environment (the target stack then has it from its own config, or not at all).
const sshPrivateKey = config.get("sshPrivateKey") || undefined;
if (sshPrivateKey !== undefined && !/^-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----\r?\n[\s\S]+\r?\n-----END ([A-Z0-9]+ )?PRIVATE KEY-----\s*$/.test(sshPrivateKey.trim() + "\n")) {
    throw new Error(`${NS}:sshPrivateKey must be a PEM or OpenSSH private key (pulumi config set --secret sshPrivateKey < key); its value is not shown`);
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
function environmentDefinition(sshKey: string | undefined): string {
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
                    jwt: { mount: vaultJwtMount, role: vaultJwtRole, subjectAttributes: ["currentEnvironment.name"] },
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

const definition = environmentDefinition(sshPrivateKey);
const environmentYaml: pulumi.Input<pulumi.asset.Asset> =
    sshPrivateKey !== undefined ? pulumi.secret(new pulumi.asset.StringAsset(definition)) : new pulumi.asset.StringAsset(definition);

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
};
if (policyEnforcement === "localPack") environmentVariables.PULUMI_OPTION_POLICY_PACK = localPolicyPackPath;

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
// `<project>/<stack>` (environment: [vault-rotation/prod]).
const environment = new pulumiservice.Environment(`${prefix}-environment`, {
    organization,
    project,
    name: stack,
    yaml: environmentYaml,
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
    { ...target, scheduleCron, pulumiOperation: pulumiservice.PulumiOperation.Update },
    { dependsOn: scheduleDependencies },
);

const driftSchedule = new pulumiservice.DriftSchedule(
    `${prefix}-drift-detection`,
    { ...target, scheduleCron: driftCron, autoRemediate: driftAutoRemediate },
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

export const targetStack = `${organization}/${project}/${stack}`;
export const notificationWebhook = webhook.displayName;
/** What the target stack's `environment:` list names. */
export const escEnvironment = `${project}/${stack}`;
export const policyGroupName = policyGroup ? policyGroup.name : "(none: policyEnforcement localPack)";
export const deploymentScheduleId = rotationSchedule.scheduleId;
export const driftScheduleId = driftSchedule.scheduleId;
