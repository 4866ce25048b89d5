// A TLS client that keeps handshaking with a set of endpoints while something
// runs (a rotation): what clients would see. Bounded: one handshake at a time
// per endpoint, a short pause between them, and it stops when told or after
// `maxSeconds`.
import * as tls from "tls";

export interface ProbeTarget {
    /** `host:port` */
    endpoint: string;
    /** SNI */
    serverName: string;
}

export interface ProbeCounts {
    endpoint: string;
    handshakes: number;
    failures: number;
    /** The first few failures, for the message. */
    errors: string[];
}

function handshake(t: ProbeTarget): Promise<string | undefined> {
    const [host, port] = [t.endpoint.slice(0, t.endpoint.lastIndexOf(":")), Number(t.endpoint.slice(t.endpoint.lastIndexOf(":") + 1))];
    return new Promise((resolve) => {
        // Whether the chain verifies is the program's check; here only: did the handshake complete?
        const socket = tls.connect({ host, port, servername: t.serverName, rejectUnauthorized: false, timeout: 5000 });
        const done = (error?: string) => {
            socket.destroy();
            resolve(error);
        };
        socket.once("secureConnect", () => done());
        socket.once("error", (e) => done(e.message));
        socket.once("timeout", () => done("timed out"));
    });
}

export function startProber(targets: ProbeTarget[], opts: { pauseMs?: number; maxSeconds?: number } = {}): { stop(): Promise<ProbeCounts[]> } {
    const pause = opts.pauseMs ?? 25;
    const deadline = Date.now() + (opts.maxSeconds ?? 900) * 1000;
    let stopped = false;
    const counts = targets.map((t) => ({ endpoint: t.endpoint, handshakes: 0, failures: 0, errors: [] as string[] }));
    const loops = targets.map(async (t, i) => {
        while (!stopped && Date.now() < deadline) {
            const error = await handshake(t);
            counts[i].handshakes++;
            if (error !== undefined) {
                counts[i].failures++;
                if (counts[i].errors.length < 5) counts[i].errors.push(error);
            }
            await new Promise((r) => setTimeout(r, pause));
        }
    });
    return {
        async stop() {
            stopped = true;
            await Promise.all(loops);
            return counts;
        },
    };
}
