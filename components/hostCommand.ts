// One way to run a rendered script on an app's host: `command.local` on the
// Pulumi runner or `command.remote` over SSH. The script text is the same for
// both, and no step takes standard input: nothing secret travels to a host (the
// agent key is generated there). On the runner the script is kept in a file named
// by its digest and `create` is a stub that checks and runs it (stepScripts.ts):
// the checkpoint holds under 1 KB per step instead of the script twice.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { STEP_KILL_GRACE_SECONDS } from "./renderers/scripts";
import { renderStepStub, stepDirectory, storeStepScript } from "./stepScripts";

/** Where an app's host commands run. */
export type HostTarget =
    | {
          kind: "local";
          path: string;
          /** Each step's time limit, enforced by its launcher on the host (rotation.stepTimeoutSeconds). */
          stepTimeoutSeconds: number;
      }
    | {
          kind: "ssh";
          /** PATH of the host steps' bodies on that host. */
          path: string;
          stepTimeoutSeconds: number;
          host: string;
          port: number;
          /** The login user: always the app user itself (no sudo; the launcher runs the body without switching). */
          user: string;
          /**
           * The host's public key, `<type> <base64>`. The provider checks the
           * server's key against it before authenticating; without it
           * `@pulumi/command` accepts any key, and whoever answers at that address
           * would be sent the agent's files and run the steps (and could hand back
           * a CSR for a key of its own).
           */
          hostKey: string;
          /** SSH private key from a secret config value. */
          privateKey: pulumi.Input<string>;
      };

export interface HostCommandArgs {
    /** The rendered shell script (no secrets in it). */
    script: pulumi.Input<string>;
    /** Values whose change re-runs the script as a replacement. */
    triggers?: pulumi.Input<unknown[]>;
}

/**
 * Declares the script as a command resource on the target host. Only stderr is
 * logged: each step prints exactly one line there (its result or its failure),
 * while stdout carries the facts a step reports (certificate text), which stay
 * in the resource's outputs instead of every `pulumi up` log.
 */
export function hostCommand(
    name: string,
    target: HostTarget,
    args: HostCommandArgs,
    opts: pulumi.CustomResourceOptions,
): command.local.Command | command.remote.Command {
    // The runner's own bound, past the launcher's (limit, SIGKILL grace, a restore of
    // at most 60s + grace): over ssh the launcher runs as the app user, who could stop it.
    const bound = target.stepTimeoutSeconds + 2 * STEP_KILL_GRACE_SECONDS + 60 + 30;
    opts = { ...opts, customTimeouts: { create: `${bound}s`, update: `${bound}s` } };
    if (target.kind === "local") {
        const dir = stepDirectory();
        // Written whenever the script is known, previews included: the file a stub
        // names exists before the engine can run the stub, and what a preview
        // planned can be read on the runner.
        const create = pulumi.output(args.script).apply((script) => {
            return renderStepStub(script, storeStepScript(dir, script).digest);
        });
        return new command.local.Command(
            name,
            {
                create,
                interpreter: ["/bin/sh", "-c"],
                triggers: args.triggers,
                logging: "stderr",
            },
            opts,
        );
    }
    return new command.remote.Command(
        name,
        {
            connection: {
                host: target.host,
                port: target.port,
                user: target.user,
                hostKey: target.hostKey,
                privateKey: target.privateKey,
            },
            create: args.script,
            triggers: args.triggers,
            logging: "stderr",
        },
        opts,
    );
}
