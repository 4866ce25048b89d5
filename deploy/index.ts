// Pulumi Deployments for the vault-rotation target stack: where its source is and
// how a run is prepared (DeploymentSettings), the scheduled `pulumi up` that renews,
// rotates on an epoch change and verifies (DeploymentSchedule), and drift detection
// (DriftSchedule). Config is read and checked once, below; nothing here is secret.
import * as pulumi from "@pulumi/pulumi";
import * as pulumiservice from "@pulumi/pulumiservice";

const config = new pulumi.Config();

/** A config value that must match `pattern`, with an error naming the key. */
function checked(key: string, value: string, pattern: RegExp, what: string): string {
    if (!pattern.test(value)) {
        throw new Error(`vault-rotation-deploy:${key} must be ${what}, got ${JSON.stringify(value)}`);
    }
    return value;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
// Five cron fields (minute hour day-of-month month day-of-week).
const CRON = /^\s*\S+(\s+\S+){4}\s*$/;

const organization = checked("organization", config.require("organization"), NAME, "a Pulumi organization name");
const project = checked("project", config.require("project"), NAME, "a Pulumi project name");
const stack = checked("stack", config.require("stack"), NAME, "a stack name");
const repoUrl = checked("repoUrl", config.require("repoUrl"), /^https:\/\/\S+$/, "an https:// git URL");
const branch = checked("branch", config.require("branch"), /^[A-Za-z0-9._/-]+$/, "a git branch name");
const repoDir = config.get("repoDir") || ".";
const scheduleCron = checked("scheduleCron", config.require("scheduleCron"), CRON, "a 5-field cron expression");
const driftCron = checked("driftCron", config.require("driftCron"), CRON, "a 5-field cron expression");
const driftAutoRemediate = config.getBoolean("driftAutoRemediate") ?? false;
const vaultAddr = checked("vaultAddr", config.require("vaultAddr"), /^https:\/\/[A-Za-z0-9.-]+(:\d+)?\/?$/, "https://host[:port]");
const vaultCaCertFile = config.get("vaultCaCertFile") || "";
const vaultJwtRole = config.get("vaultJwtRole") || "";
const vaultJwtMount = config.get("vaultJwtMount") || "jwt";
const agentPoolId = config.get("agentPoolId") || "";
const executorImage = config.get("executorImage") || "";
if (vaultJwtRole !== "") checked("vaultJwtRole", vaultJwtRole, NAME, "a Vault role name");
checked("vaultJwtMount", vaultJwtMount, /^[A-Za-z0-9][A-Za-z0-9_/-]*$/, "a Vault auth mount path");
if (vaultCaCertFile !== "") checked("vaultCaCertFile", vaultCaCertFile, /^[A-Za-z0-9._/-]+$/, "a relative file path");

/**
 * Pre-run step: trade the Deployment's Pulumi OIDC token (PULUMI_OIDC_TOKEN, also in
 * /mnt/pulumi/pulumi.oidc) for a Vault token through Vault's JWT auth method, and store it
 * where both the Vault provider and the program's dynamic providers look when VAULT_TOKEN
 * is unset: ~/.vault-token (0600). The provider SDK's OIDC settings cover AWS, Azure and
 * GCP only, hence this step. It reads only environment variables (set below, no secrets):
 * the JWT goes through printf (a bash builtin) into curl's stdin, so it never appears on a
 * process command line, and neither token is printed.
 */
const VAULT_JWT_LOGIN = [
    "set -euo pipefail; umask 077;",
    `printf '{"role":"%s","jwt":"%s"}' "$VAULT_JWT_ROLE" "\${PULUMI_OIDC_TOKEN:-$(cat /mnt/pulumi/pulumi.oidc)}"`,
    `| curl --fail --silent --show-error \${VAULT_CACERT:+--cacert "$VAULT_CACERT"} --data @- "$VAULT_ADDR/v1/auth/$VAULT_JWT_MOUNT/login"`,
    `| node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{if(!s.trim())process.exit(1);const t=JSON.parse(s).auth.client_token;` +
        `require("fs").writeFileSync(require("os").homedir()+"/.vault-token",t,{mode:0o600});console.log("vault: logged in with the deployment OIDC token")})'`,
].join(" ");

const environmentVariables: Record<string, string> = { VAULT_ADDR: vaultAddr.replace(/\/$/, "") };
if (vaultCaCertFile !== "") environmentVariables.VAULT_CACERT = vaultCaCertFile;
if (vaultJwtRole !== "") {
    environmentVariables.VAULT_JWT_ROLE = vaultJwtRole;
    environmentVariables.VAULT_JWT_MOUNT = vaultJwtMount;
}

// `npm ci` installs exactly the lockfile; the default install step is skipped so it
// does not run a second, unpinned install.
const preRunCommands = ["npm ci", ...(vaultJwtRole !== "" ? [VAULT_JWT_LOGIN] : [])];

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

// A schedule runs with the stack's deployment settings, so it waits for them.
const rotationSchedule = new pulumiservice.DeploymentSchedule(
    `${prefix}-scheduled-update`,
    { ...target, scheduleCron, pulumiOperation: pulumiservice.PulumiOperation.Update },
    { dependsOn: settings },
);

const driftSchedule = new pulumiservice.DriftSchedule(
    `${prefix}-drift-detection`,
    { ...target, scheduleCron: driftCron, autoRemediate: driftAutoRemediate },
    { dependsOn: settings },
);

export const targetStack = `${organization}/${project}/${stack}`;
export const deploymentScheduleId = rotationSchedule.scheduleId;
export const driftScheduleId = driftSchedule.scheduleId;
