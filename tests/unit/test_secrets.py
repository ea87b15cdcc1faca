"""Secrets: the redacted Secret, the env/keyring/file chain, rotation and log redaction.

A canary value (random per test) is planted in the stores; every test that shows, lists,
logs or raises something checks that the canary is not in it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import pickle
import stat
import uuid
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError

from brokerkit import secrets as bs
from brokerkit.errors import SecretNotFound
from brokerkit.secrets import (
    REDACTED,
    EnvStore,
    FileStore,
    InsecureSecretsFile,
    InvalidSecretName,
    KeyringStore,
    ReadOnlySecretStore,
    RedactingFilter,
    Secret,
    SecretChain,
    SecretInfo,
    SecretStoreError,
    SecretStoreUnavailable,
    SecretValueAsName,
    get_secret_store,
    install_log_redaction,
    reset_secret_store,
)


@pytest.fixture
def canary() -> str:
    return f"canary-{uuid.uuid4()}"


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch):
    """No BROKERKIT_SECRET_* from the machine, no real keyring (as on a headless machine, and
    so that a developer's own keyring is never touched), a fresh chain and redaction set."""
    import keyring
    from keyring.backends import fail

    for var in [v for v in os.environ if v.startswith(bs.ENV_PREFIX)]:
        monkeypatch.delenv(var)
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    reset_secret_store()
    bs._REVEALED.clear()
    yield
    keyring.set_keyring(previous)
    reset_secret_store()
    bs._REVEALED.clear()


@pytest.fixture
def chain() -> SecretChain:
    return SecretChain([EnvStore(), KeyringStore(), FileStore()])


@pytest.fixture
def secrets_file() -> Path:
    return Path(os.environ["BROKERKIT_CONFIG_DIR"]) / "secrets.toml"


class MemoryKeyring(KeyringBackend):
    """A real keyring backend (keyring's public plug-in API) that keeps passwords in memory."""

    priority = 1  # type: ignore[assignment]
    viable = False  # type: ignore[assignment]  # never picked by keyring's own discovery

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.data[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.data.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def memory_keyring():
    """A working keyring for this test (the autouse fixture restores the previous one)."""
    import keyring

    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    return backend


def shown(*objects: object) -> str:
    """Every way an object commonly turns into text, joined."""
    return "\n".join(f"{o!r}|{o!s}|{o}|{'%s' % (o,)}|{'%r' % (o,)}"  # noqa: UP031
                     for o in objects)


# -- Secret --------------------------------------------------------------------------------


def test_secret_shows_only_the_mask_in_repr_str_format_and_percent(canary):
    s = Secret(canary, "alpaca_key")
    text = shown(s)
    assert canary not in text
    assert repr(s) == "Secret('alpaca_key', '****')"
    assert str(s) == f"{s}" == "%s" % s == REDACTED  # noqa: UP031
    assert repr(Secret(canary)) == "Secret('****')"
    assert f"{s:>6}" == "  ****" and f"{s:.2f}" == REDACTED  # a spec never reaches the value


def test_secret_inside_containers_and_dataclasses_stays_masked(canary):
    @dataclasses.dataclass
    class Holder:
        key: Secret

    s = Secret(canary, "k")
    text = shown([s], {"key": s}, (s,), {"k": [s]}, Holder(s))
    assert canary not in text and REDACTED in text
    assert canary not in repr(dataclasses.asdict(Holder(s)))


def test_secret_reveal_is_the_way_to_the_value(canary):
    assert Secret(canary).reveal() == canary


def test_secret_refuses_json_and_pickle_without_leaking(canary):
    s = Secret(canary, "k")
    with pytest.raises(TypeError) as json_err:
        json.dumps({"key": s})
    with pytest.raises(TypeError) as pickle_err:
        pickle.dumps([s])
    assert canary not in str(json_err.value) + str(pickle_err.value)
    assert "cannot be pickled" in str(pickle_err.value)


def test_secret_equality_by_value_and_unhashable(canary):
    assert Secret(canary, "a") == Secret(canary, "b")
    assert Secret(canary) != Secret(canary + "x")
    assert Secret(canary) != canary  # never equal to a plain str
    with pytest.raises(TypeError):
        hash(Secret(canary))


def test_secret_is_immutable_and_not_a_str(canary):
    s = Secret(canary, "k")
    assert not isinstance(s, str)
    with pytest.raises(AttributeError):
        s._value = "other"  # type: ignore[misc]
    assert copy.deepcopy(s) is s and copy.copy(s) is s
    with pytest.raises(TypeError, match="must be a str, not bytes"):
        Secret(canary.encode())  # type: ignore[arg-type]


# -- stores --------------------------------------------------------------------------------


def test_env_store_reads_name_upper_cased_with_non_alphanumerics_as_underscores(
        monkeypatch, canary):
    assert EnvStore.variable("alpaca_key") == "BROKERKIT_SECRET_ALPACA_KEY"
    assert EnvStore.variable("ibkr.gw-pass") == "BROKERKIT_SECRET_IBKR_GW_PASS"
    monkeypatch.setenv("BROKERKIT_SECRET_IBKR_GW_PASS", canary)
    assert EnvStore().get("ibkr.gw-pass") == canary
    assert EnvStore().names() == ["ibkr_gw_pass"]


def test_env_store_is_read_only_and_names_the_variable(canary):
    with pytest.raises(ReadOnlySecretStore, match="BROKERKIT_SECRET_ALPACA_KEY"):
        EnvStore().set("alpaca_key", canary)


def test_file_store_creates_a_0600_file_and_round_trips_awkward_values(secrets_file):
    store = FileStore()
    value = 'q"uote\\back\nnew\ttab\x7f\u00e9\U0001f511 = [x]'
    store.set("alpaca.key-1", value)
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert store.get("alpaca.key-1") == value
    assert store.get("missing") is None
    assert store.delete("alpaca.key-1") and not store.delete("alpaca.key-1")
    assert store.names() == []


def test_file_store_leaves_no_temporary_files(secrets_file, canary):
    store = FileStore()
    for i in range(3):
        store.set(f"k{i}", canary)
    assert sorted(p.name for p in secrets_file.parent.iterdir()
                  if not p.name.startswith(".secrets.lock")) == ["secrets.toml"]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_file_store_refuses_a_file_others_can_read_naming_file_and_fix(
        secrets_file, canary, mode):
    FileStore().set("k", canary)
    secrets_file.chmod(mode)
    with pytest.raises(InsecureSecretsFile) as err:
        FileStore().get("k")
    message = str(err.value)
    assert str(secrets_file) in message and f"chmod 600 {secrets_file}" in message
    assert canary not in message


def test_file_store_error_on_a_corrupt_file_does_not_quote_it(secrets_file, canary):
    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    secrets_file.write_text(f'k = "{canary}\n')
    secrets_file.chmod(0o600)
    with pytest.raises(bs.SecretStoreError) as err:
        FileStore().get("k")
    assert str(secrets_file) in str(err.value) and canary not in str(err.value)


def test_keyring_store_is_unavailable_with_the_fail_backend():
    reason = KeyringStore().unavailable_reason()
    assert reason is not None and "keyring.backends.fail.Keyring" in reason


def test_keyring_store_with_a_real_backend_stores_lists_and_deletes(memory_keyring, canary):
    store = KeyringStore()
    assert store.available
    store.set("alpaca_key", canary)
    store.set("kraken_secret", canary + "2")
    assert memory_keyring.data[("brokerkit", "alpaca_key")] == canary
    assert store.names() == ["alpaca_key", "kraken_secret"]
    assert store.delete("alpaca_key") and not store.delete("alpaca_key")
    assert store.names() == ["kraken_secret"]


# -- the chain -----------------------------------------------------------------------------


def test_chain_prefers_env_over_file(chain, monkeypatch, canary):
    chain.set("alpaca_key", canary + "-file", store="file")
    assert chain.get("alpaca_key").reveal() == canary + "-file"
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary + "-env")
    assert chain.get("alpaca_key").reveal() == canary + "-env"
    assert chain.find("alpaca_key") == "env"


def test_chain_set_defaults_to_file_when_keyring_is_unavailable(chain, canary):
    assert not chain.store("keyring").available
    assert chain.set("alpaca_key", canary) == "file"
    assert chain.find("alpaca_key") == "file"


def test_chain_set_defaults_to_keyring_when_it_is_available(memory_keyring, chain, canary):
    assert chain.set("alpaca_key", canary) == "keyring"
    assert chain.get("alpaca_key") == Secret(canary)


def test_chain_set_to_unavailable_keyring_says_why_and_what_to_do(chain, canary):
    with pytest.raises(SecretStoreUnavailable) as err:
        chain.set("alpaca_key", canary, store="keyring")
    assert "keyring" in str(err.value) and "--store file" in str(err.value)
    assert canary not in str(err.value)


def test_secret_not_found_names_every_store(chain):
    with pytest.raises(SecretNotFound) as err:
        chain.get("alpaca_key")
    message = str(err.value)
    assert "'alpaca_key'" in message
    assert all(s in message for s in ("env", "keyring (unavailable)", "file"))


@pytest.mark.parametrize("bad", ["", "has space", "a/b", "-lead", "x" * 65, "é", 42])
def test_bad_secret_names_are_rejected_clearly(chain, bad):
    with pytest.raises(InvalidSecretName, match="bad secret name"):
        chain.get(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidSecretName):
        chain.set(bad, "value-1234", store="file")  # type: ignore[arg-type]


def test_bad_name_error_does_not_echo_a_value_passed_as_the_name(chain, canary):
    with pytest.raises(InvalidSecretName) as err:
        chain.set(canary + "/+=", "alpaca_key")
    assert canary not in str(err.value) and "'/'" in str(err.value)
    with pytest.raises(SecretValueAsName) as err:  # a key-like run: said to be a value
        chain.set(canary.replace("-", "") + "/+=", "alpaca_key")
    assert canary.replace("-", "") not in str(err.value)
    assert "a secret name is expected" in str(err.value)


@pytest.mark.parametrize("value", ["PKX1Y2Z3ABCDEFGH1234", "AK0123456789ABCDEFGH",
                                   "dhSjqOXcJTbwK0jJv3aT0QIW4TdXbV9FuJGbnyA",
                                   "canary-7f3c9e51a2b44c0d9e8f11223344556677"])
def test_a_secret_value_given_as_a_name_is_refused_without_echo(chain, value):
    """Key ids and secrets (long runs of letters and digits, mixed) are not names."""
    assert bs.looks_like_secret_value(value)
    for call in (lambda: chain.get(value), lambda: chain.set(value, "x-value", store="file"),
                 lambda: chain.find(value), lambda: chain.rotate(value, "x-value"),
                 lambda: chain.delete(value), lambda: bs.validate_secret_name(value, "where")):
        with pytest.raises(SecretValueAsName) as err:
            call()
        assert value not in str(err.value) and value not in repr(err.value)
        assert "a secret name is expected" in str(err.value)


@pytest.mark.parametrize("name", ["alpaca_key", "ibkr.gw-pass", "sandbox_alpaca_key_id",
                                  "dash_oauth_secret", "k0", "alpaca.key-1",
                                  "my_really_long_descriptive_secret_name"])
def test_names_people_choose_are_not_taken_for_values(name):
    assert not bs.looks_like_secret_value(name)
    assert bs.validate_secret_name(name) == name


def test_an_env_variable_named_after_a_value_is_not_listed(monkeypatch, canary):
    """`BROKERKIT_SECRET_<value>`: listing it would print the value as a name."""
    monkeypatch.setenv("BROKERKIT_SECRET_PKX1Y2Z3ABCDEFGH1234", canary)
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary)
    assert EnvStore().names() == ["alpaca_key"]
    listed = repr(SecretChain([EnvStore()]).list())
    assert "pkx1y2z3abcdefgh1234" not in listed.lower()


def test_file_store_writes_from_many_processes_lose_nothing(secrets_file):
    """The read-modify-write is held under filelock's lock (`.secrets.lock`): 4 processes
    writing 10 names each leave all 40."""
    import subprocess
    import sys

    code = ("import sys; from brokerkit.secrets import FileStore; s = FileStore()\n"
            "for i in range(10): s.set(f'p{sys.argv[1]}_{i}', 'value-' + str(i))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(4)]
    assert [p.wait(120) for p in procs] == [0, 0, 0, 0]
    assert len(FileStore().names()) == 40


def test_file_store_lock_held_elsewhere_times_out_naming_the_lock(secrets_file, monkeypatch):
    from filelock import FileLock

    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(FileStore, "LOCK_TIMEOUT", 0.2)
    other = FileLock(secrets_file.parent / ".secrets.lock", thread_local=False)
    import threading

    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another holder (a thread: FileLock is per-object, like a process)
        with other:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        with pytest.raises(bs.SecretStoreError, match=r"\.secrets\.lock"):
            FileStore().set("k", "value-1")
    finally:
        release.set()
        t.join(30)
    FileStore().set("k", "value-1")
    assert FileStore().get("k") == "value-1"


def test_list_gives_names_and_stores_never_values(chain, monkeypatch, canary, caplog):
    chain.set("alpaca_key", canary, store="file")
    chain.set("kraken_secret", canary, store="file")
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary)
    infos = chain.list()
    assert infos == [SecretInfo("alpaca_key", "env"),
                     SecretInfo("alpaca_key", "file", shadowed=True),
                     SecretInfo("kraken_secret", "file")]
    assert canary not in shown(infos, *infos) + caplog.text


def test_set_warns_when_an_earlier_store_shadows_the_value(chain, monkeypatch, canary, caplog):
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary)
    with caplog.at_level(logging.WARNING, logger="brokerkit.secrets"):
        chain.set("alpaca_key", canary + "-file", store="file")
    assert "env store also holds it" in caplog.text and canary not in caplog.text


def test_rotate_changes_the_value_and_notifies_subscribers(chain, canary):
    chain.set("alpaca_key", canary, store="file")
    seen: list[tuple[str, str]] = []
    unsubscribe = chain.on_rotate(lambda name: seen.append((name, chain.get(name).reveal())))
    assert chain.rotate("alpaca_key", canary + "-2") == "file"
    assert seen == [("alpaca_key", canary + "-2")]
    unsubscribe()
    chain.rotate("alpaca_key", canary + "-3")
    assert len(seen) == 1 and chain.get("alpaca_key").reveal() == canary + "-3"


def test_rotate_keeps_the_secret_in_its_store(memory_keyring, chain, canary):
    chain.set("alpaca_key", canary, store="keyring")
    assert chain.rotate("alpaca_key", canary + "-2") == "keyring"
    assert memory_keyring.data[("brokerkit", "alpaca_key")] == canary + "-2"
    assert FileStore().names() == []


def test_a_failing_subscriber_does_not_stop_the_others(chain, canary, caplog):
    chain.set("k1", canary, store="file")
    calls: list[str] = []

    def broken(name: str) -> None:
        raise RuntimeError("reconnect failed")

    chain.on_rotate(broken)
    chain.on_rotate(calls.append)
    chain.rotate("k1", canary + "-2")
    assert calls == ["k1"] and "reconnect failed" in caplog.text


def test_rotate_of_an_env_secret_is_refused_saying_how_to_change_it(chain, monkeypatch, canary):
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary)
    notified: list[str] = []
    chain.on_rotate(notified.append)
    with pytest.raises(ReadOnlySecretStore) as err:
        chain.rotate("alpaca_key", canary + "-2")
    assert "BROKERKIT_SECRET_ALPACA_KEY" in str(err.value) and "environment" in str(err.value)
    assert canary not in str(err.value)
    assert notified == [] and chain.get("alpaca_key").reveal() == canary


def test_rotate_of_an_unknown_secret_raises_not_found(chain, canary):
    with pytest.raises(SecretNotFound):
        chain.rotate("alpaca_key", canary)


def test_delete_removes_from_writable_stores_and_refuses_env_only(chain, monkeypatch, canary):
    chain.set("alpaca_key", canary, store="file")
    assert chain.delete("alpaca_key") == ["file"]
    assert chain.find("alpaca_key") is None
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary)
    with pytest.raises(ReadOnlySecretStore, match="unset BROKERKIT_SECRET_ALPACA_KEY"):
        chain.delete("alpaca_key")
    with pytest.raises(SecretNotFound):
        chain.delete("never_set")


def test_delete_of_a_secret_also_in_env_warns_that_env_still_supplies_it(
        chain, monkeypatch, canary, caplog):
    chain.set("alpaca_key", canary, store="file")
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary + "-env")
    assert chain.delete("alpaca_key") == ["file"]
    assert "still set in the environment (BROKERKIT_SECRET_ALPACA_KEY)" in caplog.text


class LockedKeyring(MemoryKeyring):
    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("the keyring is locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError("the keyring is locked")


def test_a_failing_keyring_write_raises_a_store_error_naming_store_and_secret(chain, canary):
    import keyring

    keyring.set_keyring(LockedKeyring())
    with pytest.raises(SecretStoreError, match="keyring store failed to store secret 'k1'"
                       ) as err:
        chain.set("k1", canary, store="keyring")
    assert canary not in str(err.value)


def test_a_failing_keyring_read_falls_through_to_the_file_with_a_warning(chain, canary,
                                                                        caplog):
    import keyring

    chain.set("k1", canary, store="file")
    keyring.set_keyring(LockedKeyring())
    assert chain.get("k1").reveal() == canary
    assert "secret store keyring failed to read k1" in caplog.text and canary not in caplog.text


def test_resolve_turns_secret_refs_into_secrets(chain, monkeypatch, canary):
    chain.set("alpaca_secret", canary + "-s", store="file")
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", canary + "-k")
    resolved = chain.resolve({"api_key": "alpaca_key", "secret_key": "alpaca_secret"})
    assert {k: v.reveal() for k, v in resolved.items()} == {
        "api_key": canary + "-k", "secret_key": canary + "-s"}
    assert canary not in repr(resolved)
    with pytest.raises(SecretNotFound, match="missing_one"):
        chain.resolve({"api_key": "missing_one"})


def test_get_secret_store_is_process_wide_and_resettable():
    first = get_secret_store()
    assert get_secret_store() is first
    assert [s.name for s in first.stores] == ["env", "keyring", "file"]
    reset_secret_store()
    assert get_secret_store() is not first


# -- log redaction -------------------------------------------------------------------------


def test_revealed_value_logged_by_mistake_is_redacted(canary, caplog):
    install_log_redaction()
    log = logging.getLogger("brokerkit.adapters.demo")
    secret = Secret(canary, "alpaca_key")
    value = secret.reveal()
    with caplog.at_level(logging.INFO):
        log.info("connecting with key %s", value)
        log.info(f"connecting with key {value}")
        log.info("as dict %(key)s", {"key": value})
        logging.getLogger("somebody.else").warning("token=%r", value)
        log.info("the secret object itself: %s %r", secret, secret)
    assert canary not in caplog.text
    assert caplog.text.count(REDACTED) >= 6
    assert all(canary not in r.getMessage() for r in caplog.records)


def test_revealed_value_in_a_logged_exception_is_redacted(canary, caplog):
    install_log_redaction()
    value = Secret(canary).reveal()
    try:
        raise ValueError(f"auth failed for {value}")
    except ValueError:
        logging.getLogger("brokerkit").exception("broker said no")
    assert "auth failed for ****" in caplog.text and canary not in caplog.text


def test_redacting_filter_on_a_handler_scrubs_message_and_args(canary):
    value = Secret(canary).reveal()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "key=%s and %d", (value, 7),
                               None)
    assert RedactingFilter().filter(record) is True
    assert record.getMessage() == "key=**** and 7"


def test_values_never_revealed_are_not_scrubbed_and_short_values_are_ignored(canary):
    Secret("abc").reveal()  # too short to redact without garbling logs
    Secret(canary)  # never revealed
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s abc", (canary,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == f"{canary} abc"


def test_install_log_redaction_is_idempotent_and_covers_root_handlers():
    handler = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_log_redaction()
        install_log_redaction()
        assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
        bk = logging.getLogger("brokerkit")
        assert sum(isinstance(f, RedactingFilter) for f in bk.filters) == 1
    finally:
        root.removeHandler(handler)


def test_the_revealed_set_is_bounded(canary):
    registry = bs._Revealed(maxsize=3)
    for i in range(5):
        registry.add(f"{canary}-{i}")
    pattern = registry.pattern()
    assert pattern is not None
    assert not pattern.search(f"{canary}-0") and pattern.search(f"{canary}-4")
