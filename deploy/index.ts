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
const agentPoolId = config.get("agentPoolId") || "";
const executorImage = config.get("executorImage") || "";
if (agentPoolId !== "") checked("agentPoolId", agentPoolId, /^[A-Za-z0-9-]+$/, "an agent pool id");
if (executorImage !== "") checked("executorImage", executorImage, /^[A-Za-z0-9][A-Za-z0-9._/:@-]*$/, "a container image reference");

// Vault access is the rotation program's own business: it reads `vault:address`,
// `vault:caCertFile` and `vault-rotation:vault.jwtAuth` from its stack config and logs in
// with the Deployment's OIDC token (PULUMI_OIDC_TOKEN, or /mnt/pulumi/pulumi.oidc), which
// every Pulumi Deployment gets without any setting here. So the run needs no pre-run
// login and no environment variables: in particular no VAULT_TOKEN, which would take
// precedence over the JWT login in the program's dynamic providers.
// `npm ci` installs exactly the lockfile; the default install step is skipped so it
// does not run a second, unpinned install. It also links the dynamic providers' local
// package (@vault-rotation/providers), which the providers Pulumi runs load by name.
//
// No PULUMI_SKIP_CHECKPOINTS here, although the drift check is a preview: settings
// (and their environment variables) are per stack and also run the scheduled
// `pulumi up`, which must keep its per-step checkpoints (a crash mid-rotation must
// not lose the record of certs issued and revocations owed). Stacks are kept small
// instead (docs/OPERATIONS.md, "Sharding a large fleet").
const preRunCommands = ["npm ci"];
// One app's failed step (a compromised app user can plant one in its own home) must
// not keep every other app on its old credentials: the scheduled update goes on
// with everything that does not depend on the failure, and still fails, naming it.
const environmentVariables = { PULUMI_CONTINUE_ON_ERROR: "true" };

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
