"""Configuration: discovery order, typed settings, and errors that name file, key, expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerkit.config import find_config, load_settings
from brokerkit.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "brokerkit.toml"
    p.write_text(text)
    return p


def test_no_file_means_embedded_sandbox(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.source is None and s.embedded and s.base_currency == "USD"
    assert s.book_url.startswith("sqlite:///") and s.book_url.endswith("book.db")


def test_discovery_order_env_then_cwd_then_user_dir(tmp_path, monkeypatch):
    user = tmp_path / "cfg"
    user.mkdir()
    monkeypatch.setenv("BROKERKIT_CONFIG_DIR", str(user))
    (user / "brokerkit.toml").write_text('base_currency = "GBP"\n')
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert find_config() == user / "brokerkit.toml"
    (work / "brokerkit.toml").write_text('base_currency = "EUR"\n')
    assert find_config() == work / "brokerkit.toml"
    other = tmp_path / "other.toml"
    other.write_text('base_currency = "JPY"\n')
    monkeypatch.setenv("BROKERKIT_CONFIG", str(other))
    assert load_settings().base_currency == "JPY"


def test_missing_env_config_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BROKERKIT_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        find_config()


def test_full_file_parses(tmp_path, monkeypatch):
    monkeypatch.delenv("BROKERKIT_DATABASE_URL", raising=False)
    p = write(tmp_path, """
base_currency = "EUR"
[book]
url = "sqlite:///x.db"
[connections.alpaca]
type = "alpaca"
accounts = ["PA1"]
options = { paper = true }
secrets = { api_key = "alpaca_key", secret_key = "alpaca_secret" }
[connections.old]
type = "statements"
read_only = true
[fx.rates]
EURUSD = 1.08
[risk]
max_order_quantity = 10
""")
    s = load_settings(p)
    assert s.base_currency == "EUR" and s.book_url == "sqlite:///x.db" and not s.embedded
    a = s.connections["alpaca"]
    assert a.type == "alpaca" and a.option("paper") is True and a.accounts == ("PA1",)
    assert a.secrets == {"api_key": "alpaca_key", "secret_key": "alpaca_secret"}
    assert s.connections["old"].read_only and s.fx_rates == {"EURUSD": 1.08}
    assert s.risk == {"max_order_quantity": 10}


def test_database_url_env_overrides_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BROKERKIT_DATABASE_URL", "postgresql+psycopg://u@h/db")
    p = write(tmp_path, '[book]\nurl = "sqlite:///x.db"\n')
    assert load_settings(p).book_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(("text", "key", "expected"), [
    ('base_currency = "dollars"', "base_currency", "3-letter"),
    ('base_currency = 5', "base_currency", "3-letter"),
    ('colour = "red"', "colour", "one of"),
    ('[connections.x]\ntype = "robinhood"', "connections.x.type", "one of"),
    ('[connections.x]\ntype = "paper"\nport = 5', "connections.x.port", "one of"),
    ('[connections.x]\ntype = "paper"\nread_only = "yes"', "connections.x.read_only",
     "true or false"),
    ('[connections.x]\ntype = "paper"\naccounts = "A1"', "connections.x.accounts", "list"),
    ('[connections.x]\ntype = "alpaca"\nsecrets = { api_key = "PK ABC/123=" }',
     "connections.x.secrets.api_key", "secret name"),
    ('[fx.rates]\nEURUSD = -1', "fx.rates.EURUSD", "positive"),
    ('[fx.rates]\nEURO = 1.1', "fx.rates.EURO", "EURUSD"),
    ('book = 5', "book", "a table"),
])
def test_bad_values_name_file_key_and_expectation(tmp_path, text, key, expected):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    msg = str(exc.value)
    assert str(p) in msg and f"[{key}]" in msg and expected in msg
    assert exc.value.key == key


def test_invalid_toml_names_the_file_and_line(tmp_path):
    p = write(tmp_path, "base_currency = \n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert str(p) in str(exc.value) and "line 1" in str(exc.value)


def test_base_currency_not_in_iso_4217_is_refused(tmp_path):
    """ISO 4217 List One (SIX, the maintenance agency) has no XYZ: a typo in base_currency
    is an error naming the key, never a silent "XYZ" book."""
    p = write(tmp_path, 'base_currency = "XYZ"\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.key == "base_currency" and "ISO 4217" in str(exc.value)
    assert load_settings(write(tmp_path, 'base_currency = "CHF"\n')).base_currency == "CHF"


def test_accounts_take_profiles_for_routing(tmp_path):
    p = write(tmp_path, '[connections.ibkr]\ntype = "ibkr"\naccounts = ["U1", { id = "U2", '
                        'kind = "margin", currencies = ["EUR", "USD"], markets = ["XETRA"], '
                        'asset_classes = ["stock"] }]\n')
    conn = load_settings(p).connections["ibkr"]
    assert conn.accounts == ("U1", "U2") and set(conn.account_profiles) == {"U2"}
    profile = conn.account_profiles["U2"]
    assert profile.currencies == {"EUR", "USD"} and profile.markets == {"XETRA"}
    assert [a.value for a in profile.asset_classes] == ["equity"]


@pytest.mark.parametrize(("entry", "key", "expected"), [
    ('{ id = "U2", currencies = ["ZZZ"] }', "connections.x.accounts[0].currencies",
     "ISO 4217"),
    ('{ id = "U2", markets = ["MOON"] }', "connections.x.accounts[0].markets", "XETRA"),
    ('{ id = "U2", kind = "savings" }', "connections.x.accounts[0].kind", "crypto"),
    ('{ id = "U2", asset_classes = ["beanie"] }', "connections.x.accounts[0].asset_classes",
     "equity"),
    ('{ currencies = ["EUR"] }', "connections.x.accounts[0].id", "account id"),
    ('{ id = "U2", colour = "red" }', "connections.x.accounts[0].colour", "one of"),
    ('5', "connections.x.accounts[0]", "list of account ids"),
])
def test_bad_account_profile_names_the_key(tmp_path, entry, key, expected):
    p = write(tmp_path, f'[connections.x]\ntype = "paper"\naccounts = [{entry}]\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.key == key and expected in str(exc.value)


# -- malformed input refused at load (issue 16) -----------------------------------------------


def test_non_utf8_file_names_the_file_line_column_and_byte_offset(tmp_path):
    """TOML v1.0.0 (https://toml.io/en/v1.0.0#spec): "A TOML file must be a valid UTF-8
    encoded Unicode document." A Latin-1 'é' is refused naming where it is."""
    p = tmp_path / "brokerkit.toml"
    p.write_bytes(b'base_currency = "USD"\n# caf\xe9\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    msg = str(exc.value)
    assert str(p) in msg and "not UTF-8" in msg
    assert "offset 27" in msg and "line 2, column 6" in msg and "0xe9" in msg


@pytest.mark.parametrize(("text", "key"), [
    ("[risk]\nmax_order_quantity = -5", "risk.max_order_quantity"),
    ('[risk]\nmax_order_quantity = "lots"', "risk.max_order_quantity"),
    ("[risk]\ncolour = 1", "risk.colour"),
    ("[routing]\nequity = 5", "routing.equity"),
    ('[routing]\nbeanie = "paper"', "routing.beanie"),
    ('[connections.p]\ntype = "paper"\n[routing]\ndefault = "nope"', "routing.default"),
    ('[connections.p]\ntype = "paper"\n[risk.connections.nope]\nmax_order_quantity = 1',
     "risk.connections.nope"),
])
def test_invalid_risk_and_routing_values_are_refused_at_load(tmp_path, text, key):
    """Refused when the file is read (status, serve, every command), not at the first order."""
    p = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.key == key and str(p) in str(exc.value)


def test_unknown_sandbox_keys_are_refused(tmp_path):
    p = write(tmp_path, "[sandbox]\nprot = 7000\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.key == "sandbox.prot" and "port" in str(exc.value)


SECRET_VALUES = ["PKX1Y2Z3ABCDEFGH1234", "dhSjqOXcJTbwK0jJv3aT0QIW4TdXbV9FuJGbnyA",
                 "canary-7f3c9e51a2b44c0d9e8f11223344556677"]


@pytest.mark.parametrize("value", SECRET_VALUES)
def test_a_secret_value_where_its_name_belongs_is_refused_without_echo(tmp_path, value):
    p = write(tmp_path, f'[connections.a]\ntype = "alpaca"\n'
                        f'secrets = {{ api_key = "{value}", secret_key = "alpaca_secret" }}\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.key == "connections.a.secrets.api_key"
    assert "secret name" in str(exc.value) and value not in str(exc.value)
    assert value not in repr(exc.value)


@pytest.mark.parametrize("option", ["api_key", "secret_key", "password", "token"])
def test_a_credential_among_the_options_is_refused_without_echo(tmp_path, option):
    value = SECRET_VALUES[0]
    p = write(tmp_path, f'[connections.a]\ntype = "alpaca"\noptions = {{ {option} = "{value}" }}\n')
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.key == f"connections.a.options.{option}"
    assert value not in str(exc.value) and "secrets = {" in str(exc.value)


def test_a_connection_built_in_code_refuses_a_value_for_a_name():
    from brokerkit.config import ConnectionConfig

    with pytest.raises(ConfigError) as exc:
        ConnectionConfig("a", "alpaca", secrets={"api_key": SECRET_VALUES[0]})
    assert exc.value.key == "connections.a.secrets.api_key"
    assert SECRET_VALUES[0] not in str(exc.value)
    ok = ConnectionConfig("a", "alpaca", secrets={"api_key": "sandbox_alpaca_key_id"})
    assert ok.secrets["api_key"] == "sandbox_alpaca_key_id"
