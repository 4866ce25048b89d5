// The forwarders that dynamic resources serialize: the same methods as the
// implementation (Pulumi treats a missing `update` or `read` differently), and
// each call reaching the implementation through the package name.
import type * as pulumi from "@pulumi/pulumi";
import { forwardingProvider } from "../../../providers/forward";
import * as implementations from "../../../providers/implementations";

const connection = { address: "https://vault.test.internal:8200", caCertFile: "/etc/vault/ca.pem" };

const providers = Object.entries(implementations) as [string, pulumi.dynamic.ResourceProvider][];

test.each(providers)("%s: the forwarder has exactly the implementation's methods", (name, implementation) => {
    const forwarder = forwardingProvider(name, implementation);
    const methods = Object.entries(implementation).filter(([, v]) => typeof v === "function").map(([k]) => k);
    expect(Object.keys(forwarder).sort()).toEqual(methods.sort());
});

test("CertRevocation has no read (a refresh keeps its state), so neither has its forwarder", () => {
    const forwarder = forwardingProvider("certRevocationProvider", implementations.certRevocationProvider);
    expect(typeof forwarder.update).toBe("function");
    expect(forwarder.read).toBeUndefined();
});

test("a forwarded call returns what the implementation returns, loaded by package name", async () => {
    const forwarder = forwardingProvider("kvMountProvider", implementations.kvMountProvider);
    const news = { connection, mount: "/secret/" };
    const olds = { connection, mount: "secret" };
    await expect(forwarder.check!(olds, news)).resolves.toEqual(await implementations.kvMountProvider.check!(olds, news));
    await expect(forwarder.check!(olds, news)).resolves.toMatchObject({ inputs: { mount: "secret" }, failures: [] });
});

test("a forwarder module whose methods differ from the implementation's is refused when the program loads", () => {
    const withoutUpdate = { ...implementations.kvMountProvider, update: undefined };
    expect(() => forwardingProvider("kvMountProvider", withoutUpdate)).toThrow(
        "providers/forwarders/kvMountProvider.js forwards [check, diff, create, read, update, delete] but kvMountProvider has [check, diff, create, read, delete]",
    );
});
