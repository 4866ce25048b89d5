// The read-host-state script's output format, shared by the component that
// renders the script and the provider that checks what it printed. Pure, and
// below both layers, so that no provider imports a component.

/** The sections of the read-host-state output. */
export interface HostState {
    /** The fullchain now on the host (certificate blocks only). */
    fullchain: string;
    /** The fullchain moved aside before the restart, or "". */
    previous: string;
    /** The post-hook's report line for this render. */
    reload: string;
    /** `systemctl --user is-active` of the agent service. */
    service: string;
    /**
     * The host's cert login as the app user with the agent files just written:
     * `policies=<sorted, comma-separated>` or `error=<one line>`; "" when absent.
     */
    login: string;
    /** First line of `vault version` on the host. */
    agentVersion: string;
    /** The agent's login certificate on the host (the verify step's; "" from the rotate step). */
    agentCert: string;
}

/** Splits the output of the read-host-state script into its sections. */
export function parseHostState(stdout: string): HostState {
    const sections: Record<string, string[]> = {};
    let current: string | undefined;
    for (const line of stdout.split("\n")) {
        const m = /^### ([a-z-]+)$/.exec(line);
        if (m) {
            current = m[1];
            sections[current] = [];
        } else if (current) {
            sections[current].push(line);
        }
    }
    const text = (k: string) => (sections[k] ?? []).join("\n").trim();
    // One line by contract: anything after the first is not part of the verdict.
    const login = text("login").split("\n")[0].trim();
    return { fullchain: text("fullchain"), previous: text("previous"), reload: text("reload"), service: text("service"), login, agentVersion: text("agent-version"), agentCert: text("agent-cert") };
}
