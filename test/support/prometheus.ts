// The node_exporter textfile as Prometheus reads it: parsed with a real
// text-format parser (parse-prometheus-text-format), not a regex.
import * as fs from "fs";
import * as path from "path";

interface Sample {
    value: string;
    labels?: Record<string, string>;
}
export interface MetricFamily {
    name: string;
    help: string;
    type: string;
    metrics: Sample[];
}

// The package ships no types.
const parsePrometheusTextFormat = require("parse-prometheus-text-format") as (text: string) => MetricFamily[];

export interface Textfile {
    families: MetricFamily[];
    /** The sample of `name` whose labels include `labels`, as a number; undefined when there is none. */
    value(name: string, labels: Record<string, string>): number | undefined;
    /** File and directory permission bits. */
    mode: number;
    dirMode: number;
    /** Other entries of the directory (a temp file left behind would show here). */
    siblings: string[];
}

export function readTextfile(file: string): Textfile {
    const families = parsePrometheusTextFormat(fs.readFileSync(file, "utf8"));
    return {
        families,
        value(name, labels) {
            const family = families.find((f) => f.name === name);
            const sample = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
            return sample === undefined ? undefined : Number(sample.value);
        },
        mode: fs.statSync(file).mode & 0o7777,
        dirMode: fs.statSync(path.dirname(file)).mode & 0o7777,
        siblings: fs.readdirSync(path.dirname(file)).filter((f) => f !== path.basename(file)),
    };
}
