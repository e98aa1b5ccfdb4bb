"""Reload under load: the config and the component are swapped again and
again, some swaps broken on purpose, while senders keep batches flowing."""

import os
import subprocess

import harness
import load

SWAPS = 60
MIN_BATCHES = 3000
TRIGGERS = ("file", "sighup", "post")
STARS = "*" * 11


def letters(i):
    """A version tag without digits (a mask label may not contain any)."""
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def good_config(i):
    """Version i's config: every fourth one stars, the rest a label naming the
    version, so each batch at the sink shows which config processed it."""
    if i % 4 == 0:
        return "version: 1\nmask:\n  replacement: stars\n", STARS
    label = f"[fnr-v{letters(i)}]"
    return f'version: 1\nmask:\n  replacement: label\n  label: "{label}"\n', label


# Broken swaps. A config that wrongly got through would show its label
# ([fnr-broken]) at the sink; a truncated component must fail to compile.
BROKEN = (
    ("invalid-yaml", "config", "version: 1\nmask: [replacement: label\n"),
    ("invalid-value", "config", 'version: 1\nmask:\n  replacement: label\n  label: "[fnr-broken]"\n  mask_char: "77"\n'),
    ("truncated-component", "component", None),
    ("unknown-mode", "config", 'version: 1\nmask:\n  mode: sometimes\n  replacement: label\n  label: "[fnr-broken]"\n'),
)


def with_custom_section(component, payload):
    """The same component with one more custom section (id 0) at the end: a
    byte-different file (another hash, another cache entry) that behaves the
    same."""
    def leb(n):
        out = bytearray()
        while True:
            b, n = n & 0x7F, n >> 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)

    name = b"tracescrub-test"
    body = leb(len(name)) + name + payload
    return component + b"\x00" + leb(len(body)) + body


def test_reload_under_load_loses_nothing_and_mixes_no_versions(tmp_path, procs, report):
    """Scenario: 6 senders post batches (each with a unique id) while a swapper
    makes 60 reloads through all three triggers (file change, SIGHUP, POST
    /-/reload), alternating the config's mask label and two byte-different
    components; every fifth swap is broken (bad YAML, a bad value, an unknown
    mode, a truncated component).
    Guarantees: every acknowledged batch reaches the sink exactly once; every
    received batch was processed by one version (its four masked values carry
    the same replacement) that was a good one; broken swaps are refused (POST
    says so, the failure counter counts them) and the previous version keeps
    serving; the gateway is up and serving the last good version at the end."""
    work = str(tmp_path)
    comp_a = os.path.join(work, "a.wasm")
    subprocess.run([harness.tracescrub_bin(), "inspect", "--save", comp_a], check=True, stdout=subprocess.DEVNULL)
    components = [open(comp_a, "rb").read()]
    components.append(with_custom_section(components[0], b"variant b"))
    assert components[0] != components[1]

    cfg_path = os.path.join(work, "config.yaml")
    comp_path = os.path.join(work, "component.wasm")
    cfg, token = good_config(0)
    harness.write_atomic(cfg_path, cfg)
    harness.write_atomic(comp_path, components[0])
    good_tokens = {token}

    sink = harness.Sink(work)
    procs.append(sink)
    gw = harness.Gateway(work, sink.url, config=cfg_path, component=comp_path)
    procs.append(gw)
    # The hashes the gateway reports are of the files' bytes.
    assert gw.component_sha256 == harness.sha256_file(comp_path)
    assert gw.config_sha256 == harness.sha256_file(cfg_path)

    senders = load.Load(lambda: gw.http_url, senders=6, prefix="r").start()
    on_disk = {"config": cfg.encode(), "component": components[0]}
    want = dict(on_disk)
    comp_index = 0
    serving = gw.active_version()
    assert serving == (gw.component_sha256, gw.config_sha256), serving
    broken = 0
    # Good swaps that must each have reloaded: a file-change swap whose files
    # already hold the serving version (a stars config after a stars config)
    # writes nothing, so nothing reloads.
    must_reload = 0
    try:
        for i in range(1, SWAPS + 1):
            trigger = TRIGGERS[i % len(TRIGGERS)]
            failed_before = failures(gw)
            if i % 5 == 0:
                name, target, content = BROKEN[(i // 5) % len(BROKEN)]
                if target == "component":
                    content = components[comp_index][: len(components[comp_index]) // 2]
                content = content if isinstance(content, bytes) else content.encode()
                harness.write_atomic(comp_path if target == "component" else cfg_path, content)
                on_disk[target] = content
                fire(gw, trigger, ok=False, what=f"swap {i} ({name})")
                harness.wait_until(lambda: failures(gw) > failed_before, 60,
                                   f"swap {i} ({name}, {trigger}) to be counted as a failed reload")
                assert gw.active_version() == serving, f"swap {i} ({name}) changed the serving version"
                broken += 1
                continue

            # A good swap: a new config on even swaps, the other component on
            # odd ones, both on every seventh; a file a broken swap left
            # behind is put back to the serving one.
            if i % 2 == 0 or i % 7 == 0:
                text, token = good_config(i)
                want["config"] = text.encode()
                good_tokens.add(token)
            if i % 2 == 1 or i % 7 == 0:
                comp_index ^= 1
                want["component"] = components[comp_index]
            for target, path in (("component", comp_path), ("config", cfg_path)):
                if on_disk[target] != want[target]:
                    harness.write_atomic(path, want[target])
                    on_disk[target] = want[target]
            want_comp = harness.sha256_bytes(want["component"])
            want_cfg = harness.sha256_bytes(want["config"])
            if trigger != "file" or (want_comp, want_cfg) != serving:
                must_reload += 1
            fire(gw, trigger, ok=True, what=f"swap {i}")

            def arrived():
                v = gw.active_version()
                return v if v == (want_comp, want_cfg) else None

            serving = harness.wait_until(arrived, 60, f"swap {i} ({trigger}) to become the serving version")

        # Keep the senders going until enough batches went through.
        harness.wait_until(lambda: senders.count() >= MIN_BATCHES, 600, f"{MIN_BATCHES} batches sent")
    finally:
        senders.stop()

    assert gw.alive(), "the gateway died"
    status, _ = gw.admin_get("/readyz")
    assert status == 200
    assert gw.active_version() == serving

    by_id, counts = load.match(senders, sink.records())
    mixed, foreign, malformed, leaks = [], [], [], 0
    seen = {}
    for batch_id, arrivals in by_id.items():
        for rs in arrivals:
            try:
                tokens = load.replacements(rs)
            except ValueError as e:
                malformed.append((batch_id, str(e)))
                continue
            if len(set(tokens)) != 1:
                mixed.append((batch_id, tokens))
            elif tokens[0] not in good_tokens:
                foreign.append((batch_id, tokens[0]))
            else:
                seen[tokens[0]] = seen.get(tokens[0], 0) + 1
    leaks = sum(len(r["leaks"]) for r in sink.records())
    reloads = gw.reloads()
    report(
        "reload-under-load: sent={sent} acknowledged={acknowledged} received={received} lost={lost} "
        "duplicates={duplicates} rejected={rejected} errors={errors} unacked_but_received={unacked_but_received} "
        .format(**counts)
        + f"swaps={SWAPS} broken={broken} must_reload={must_reload} versions_seen={len(seen)} reloads={reloads}"
    )

    assert counts["sent"] >= MIN_BATCHES
    assert counts["lost"] == 0, f"{counts['lost']} acknowledged batches never reached the sink"
    assert counts["duplicates"] == 0, f"{counts['duplicates']} batches arrived more than once"
    assert counts["unknown"] == 0
    assert counts["acknowledged"] > 0
    assert not malformed, malformed[:5]
    assert not mixed, f"{len(mixed)} batches mix versions, e.g. {mixed[:3]}"
    assert not foreign, f"{len(foreign)} batches carry a replacement no good config has, e.g. {foreign[:3]}"
    assert leaks == 0
    # Batches went through more than one version: the swaps happened under load.
    assert len(seen) >= 2, seen
    failed = sum(v for k, v in reloads.items() if k not in SUCCESS_RESULTS)
    succeeded = sum(v for k, v in reloads.items() if k in SUCCESS_RESULTS)
    assert failed >= broken, reloads
    assert succeeded >= must_reload, (must_reload, reloads)


# Result label values of tracescrub_reloads_total that mean success.
SUCCESS_RESULTS = ("success", "ok", "succeeded")


def failures(gw):
    return sum(v for k, v in gw.reloads().items() if k not in SUCCESS_RESULTS)


def fire(gw, trigger, ok, what):
    """Set off a reload: the file write already did for "file"."""
    if trigger == "sighup":
        gw.sighup()
    elif trigger == "post":
        status, body = gw.reload()
        if ok:
            assert status == 200, f"{what}: POST /-/reload answered {status}: {body}"
        else:
            assert 400 <= status < 600, f"{what}: a broken reload answered {status}: {body}"
            assert body.strip(), f"{what}: a refused reload must say why"
