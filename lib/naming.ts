// Names and host paths derived from an app's name and home. They are a public
// contract: Vault objects, files and services are found by them.

export const DEBUG_POLICY = "debug-policy";

/**
 * The stack's `debug-policy`: `<namePrefix>-debug-policy` on a stack with a
 * prefix, so that stacks sharing a Vault do not overwrite or delete each other's.
 */
export function debugPolicyName(namePrefix?: string): string {
    return namePrefix ? `${namePrefix}-${DEBUG_POLICY}` : DEBUG_POLICY;
}

/**
 * Vault object names for one app. With the stack's `namePrefix` (sharding: several
 * stacks on one Vault) every Vault name is built from `<namePrefix>-<app>`; the
 * `agent-` / `nginx-` role prefixes stay in front, where the policy pack looks for
 * them. Host names (the agent's user service) are the app's alone: a host belongs
 * to one stack.
 */
export function vaultNames(app: string, namePrefix?: string) {
    const qualified = namePrefix ? `${namePrefix}-${app}` : app;
    return {
        /** `<namePrefix>-<app>`, or the app name on a stack without a prefix. */
        qualified,
        agentRole: `agent-${qualified}`,
        leafRole: `nginx-${qualified}`,
        mapping: `agent-${qualified}`,
        /**
         * The OU of every agent cert this stack has signed for the app, required by
         * its mapping: the stack's mark, which no other stack's role carries.
         */
        agentIdentityOu: `vault-rotation agent-${qualified}`,
        issuePolicy: `${qualified}-issue`,
        markerPolicy: `${qualified}-marker`,
        kvPolicy: `${qualified}-kv`,
        kvPath: `apps/${qualified}`,
        service: `vault-agent-${app}`,
    };
}

/** Files on the app's host, all under its home directory. */
export function hostPaths(home: string, app: string) {
    return {
        vaultDir: `${home}/vault`,
        templatesDir: `${home}/vault/templates`,
        mtlsDir: `${home}/vault/mtls`,
        caDir: `${home}/vault/ca`,
        hooksDir: `${home}/vault/hooks`,
        tlsDir: `${home}/tls`,
        agentKey: `${home}/vault/mtls/agent.key`,
        /** A key generated for the next agent cert, waiting for it: the files step installs it as agent.key. */
        agentKeyNext: `${home}/vault/mtls/agent.key.next`,
        agentCert: `${home}/vault/mtls/agent.crt`,
        caPem: `${home}/vault/ca/ca.pem`,
        agentHcl: `${home}/vault/agent.hcl`,
        template: `${home}/vault/templates/${app}.fullchain.ctmpl`,
        hook: `${home}/vault/hooks/reload-tls.sh`,
        /** Written by the hook after each run: what it reloaded and whether all succeeded. */
        reloadStatus: `${home}/vault/hooks/reload-tls.status`,
        /** What the app (nginx) serves: installed here by the post-hook, atomically, never written in place. */
        fullchain: `${home}/tls/${app}.fullchain.pem`,
        /** Copy of the served fullchain taken before a rotation: what a failed rotation puts back. */
        previousFullchain: `${home}/tls/${app}.fullchain.pem.prev`,
        /** The agent's private render target: `pkiCert` reuses it while valid, so a rotation moves it aside. */
        renderDir: `${home}/vault/render`,
        renderedFullchain: `${home}/vault/render/${app}.fullchain.pem`,
        renderedPrevious: `${home}/vault/render/${app}.fullchain.pem.prev`,
        /** Touched when a rotation starts: a render or report older than it belongs to an earlier run. */
        rotationMark: `${home}/vault/render/.rotation-started`,
        /** Present while a rotate unit has moved files aside and not yet finished or put them back. */
        rotationArmed: `${home}/vault/render/.rotation-armed`,
        /** Touched by the post-hook each time it installed and reloaded with success: its mtime is the last good reload. */
        reloadOk: `${home}/vault/hooks/reload-tls.ok`,
        /** The last verification's verdict (`result=ok|failed|pending at=<unix> ok_at=<unix>`), written by the verify and record steps. */
        verifyStatus: `${home}/vault/verify.status`,
        /** Held while the metrics textfile is written (the post-hook and a verification may write it at once). */
        metricsLock: `${home}/vault/.metrics.lock`,
    };
}

/** Where an app's node_exporter textfile goes when the stack does not say: a directory of its own in the home (0755). */
export function defaultMetricsTextfile(home: string, app: string): string {
    return `${home}/metrics/vault-rotation-${app}.prom`;
}

/**
 * The policies a login through the app's cert mapping must carry, sorted.
 * Vault adds `default` to every token unless the role disables it.
 */
export function expectedTokenPolicies(tokenPolicies: readonly string[]): string[] {
    return [...new Set(["default", ...tokenPolicies])].sort();
}
