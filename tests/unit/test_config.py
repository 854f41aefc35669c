"""The YAML contract: accepted shapes, and errors that name file, key and expectation."""

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config

CONTRACT = """
sip:
  listen: "127.0.0.1:5080"
  public_address: "127.0.0.1"
  max_calls: 4
  default_agent: front-desk
  accounts:
    - username: "2001"
      password: "${FRONT_DESK_PASSWORD}"
      registrar: "sip:127.0.0.1:5160"
      domain: "127.0.0.1"
      agent: front-desk
rtp:
  port_range: [31000, 31999]
agents:
  front-desk:
    type: echo
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    return path


def test_issue_contract_loads_with_env_secret(tmp_path):
    config = load_config(write(tmp_path, CONTRACT), env={"FRONT_DESK_PASSWORD": "s3cret"})
    assert config.sip.listen.host == "127.0.0.1" and config.sip.listen.port == 5080
    assert config.sip.max_calls == 4
    account = config.sip.accounts[0]
    assert account.password == "s3cret"
    assert account.aor == "sip:2001@127.0.0.1"
    assert config.rtp.port_range == (31000, 31999)
    assert config.agents["front-desk"].type == "echo"


def test_domain_defaults_to_registrar_host(tmp_path):
    text = CONTRACT.replace('      domain: "127.0.0.1"\n', "").replace("sip:127.0.0.1:5160", "sip:pbx.example.com:5160")
    config = load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"})
    assert config.sip.accounts[0].domain == "pbx.example.com"


def test_default_config_is_valid():
    config = load_config(Path(__file__).parents[2] / "configs" / "default.yaml", env={})
    assert config.sip.accounts == ()
    assert config.sip.default_agent in config.agents


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (("max_calls: 4", "max_calls: many"), "sip.max_calls", "an integer"),
        (("max_calls: 4", "max_calls: 4\n  max_cals: 2"), "sip.max_cals", "no such key"),
        (('listen: "127.0.0.1:5080"', 'listen: "127.0.0.1"'), "sip.listen", "host:port"),
        (("type: echo", "type: parrot"), "agents.front-desk.type", "one of echo"),
        (("      agent: front-desk", "      agent: back-office"), "sip.accounts[0].agent", "the name of an agent"),
        (("sip:127.0.0.1:5160", "127.0.0.1:5160"), "sip.accounts[0].registrar", "a SIP URI"),
        (("[31000, 31999]", "[31000]"), "rtp.port_range", "a list of two ports"),
        (("default_agent: front-desk", "default_agent: nobody"), "sip.default_agent", "the name of an agent"),
    ],
)
def test_errors_name_file_key_and_expectation(tmp_path, edit, key, expected):
    path = write(tmp_path, CONTRACT.replace(*edit))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"FRONT_DESK_PASSWORD": "x"})
    message = str(info.value)
    assert str(path) in message
    assert info.value.key == key
    assert expected in message


def test_missing_environment_variable_is_named(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, CONTRACT), env={})
    assert info.value.key == "sip.accounts[0].password"
    assert "FRONT_DESK_PASSWORD" in str(info.value)


def test_yaml_syntax_error_has_position(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "sip: [unclosed\n"), env={})
    assert "line" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


CONVERSATION = """
sip:
  listen: "127.0.0.1:5080"
agents:
  front-desk:
    type: conversation
    greeting: "Harbor Dental, this is the front desk. How can I help?"
    instructions: |
      You are the receptionist.
"""


def test_conversation_agent_contract(tmp_path):
    config = load_config(write(tmp_path, CONVERSATION), env={})
    agent = config.agents["front-desk"]
    assert agent.type == "conversation" and agent.greeting.startswith("Harbor Dental")
    assert agent.instructions.strip() == "You are the receptionist."
    assert config.needs_models
    assert config.models.llm_engine == "local" and config.models.llm_model is None


def test_every_conversation_setting_is_read_from_yaml_with_its_default_in_one_place(tmp_path):
    from gateway.conversation.settings import ConversationSettings, conversation_settings

    text = CONVERSATION.replace("    instructions: |", "    apology: Sorry about that.\n    model_timeout_s: 12\n"
                                                      "    barge_in_min_ms: 80\n    instructions: |")
    settings = conversation_settings(load_config(write(tmp_path, text), env={}).agents["front-desk"])
    assert settings.apology == "Sorry about that." and settings.model_timeout_s == 12.0
    assert settings.turn.barge_in_min_ms == 80
    assert settings.unknown_answer == ConversationSettings().unknown_answer  # the one default


def test_the_turn_model_settings(tmp_path):
    from gateway.conversation.settings import conversation_settings

    text = CONVERSATION.replace("    instructions: |", "    turn_model: smart_turn\n    turn_min_silence_ms: 150\n"
                                                      "    turn_max_wait_ms: 1200\n    instructions: |")
    settings = conversation_settings(load_config(write(tmp_path, text), env={}).agents["front-desk"])
    assert settings.turn_model == "smart_turn"
    assert (settings.semantic_turn.min_silence_ms, settings.semantic_turn.max_wait_ms) == (150, 1200)
    assert settings.semantic_turn.threshold == 0.9
    assert settings.turn_audio_model and not settings.turn_text and not settings.semantic_turn.reads_words
    default = conversation_settings(load_config(write(tmp_path, CONVERSATION), env={}).agents["front-desk"])
    assert default.turn_model == "smart_turn+text"
    assert default.turn_audio_model and default.turn_text and default.semantic_turn.reads_words


@pytest.mark.parametrize(("line", "expected"), [("model_timeout_s: 0", "a number from 1 to 120"),
                                                ("preroll_ms: lots", "an integer from 0 to 1000"),
                                                ("end_of_turn_ms: 100\n    pause_ms: 200", "at least pause_ms"),
                                                ("turn_model: smartturn", "one of none, smart_turn, text"),
                                                ("turn_model_threshold: 1.5", "a number from 0.01 to 0.99"),
                                                ("turn_max_wait_ms: 300\n    end_of_turn_ms: 400",
                                                 "at least end_of_turn_ms (400)")])
def test_conversation_setting_errors_name_file_key_and_expectation(tmp_path, line, expected):
    path = write(tmp_path, CONVERSATION.replace("    instructions: |", f"    {line}\n    instructions: |"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value) and expected in str(info.value)
    assert info.value.key == "agents.front-desk." + line.split(":")[0]


def test_conversation_agent_needs_instructions(tmp_path):
    text = CONVERSATION.replace("    instructions: |\n      You are the receptionist.\n", "")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.key == "agents.front-desk.instructions"


def test_conversation_keys_are_refused_on_an_echo_agent(tmp_path):
    text = CONVERSATION.replace("type: conversation", "type: echo")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.key.startswith("agents.front-desk.")


@pytest.mark.parametrize(
    ("models", "key"),
    [
        ("models:\n  llm: {engine: cloud}\n", "models.llm.engine"),
        ("models:\n  llm: {model: /no/such/model.gguf}\n", "models.llm.model"),
        ("models:\n  llm: {engine: openai}\n", "models.llm.base_url"),
        ("models:\n  tts: {voice: /no/such/voice.onnx}\n", "models.tts.voice"),
        ("models:\n  stt: {beam: 5}\n", "models.stt.beam"),
        ("models:\n  stt: {word_probs: sometimes}\n", "models.stt.word_probs"),
        ("models:\n  stt: {engine: openai}\n", "models.stt.base_url"),
        ("models:\n  stt: {engine: remote, base_url: 'http://gpu:8000/v1'}\n", "models.stt.engine"),
        ("models:\n  stt: {engine: openai, base_url: 'gpu:8000'}\n", "models.stt.base_url"),
        ("models:\n  stt: {engine: openai, base_url: 'http://gpu:8000/v1', threads: 4}\n", "models.stt.threads"),
        ("models:\n  stt: {engine: openai, base_url: 'http://gpu:8000/v1', timeout_s: 0}\n", "models.stt.timeout_s"),
        ("models:\n  tts: {engine: openai}\n", "models.tts.base_url"),
        ("models:\n  tts: {engine: openai, base_url: 'http://gpu:8000/v1', response_format: mp3}\n",
         "models.tts.response_format"),
        ("models:\n  tts: {sample_rate: 16000}\n", "models.tts.sample_rate"),
    ],
)
def test_models_section_errors(tmp_path, models, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, CONVERSATION + models), env={})
    assert info.value.key == key


def test_word_probabilities_are_on_unless_turned_off(tmp_path):
    assert load_config(write(tmp_path, CONVERSATION), env={}).models.stt_word_probs
    off = load_config(write(tmp_path, CONVERSATION + "models:\n  stt: {word_probs: false}\n"), env={})
    assert not off.models.stt_word_probs


def test_openai_compatible_llm(tmp_path):
    text = CONVERSATION + "models:\n  llm: {engine: openai, base_url: 'http://10.0.0.7:8080/v1', model: qwen}\n"
    config = load_config(write(tmp_path, text), env={})
    assert config.models.llm_engine == "openai" and config.models.llm_base_url.endswith("/v1")
    assert config.models.llm_model == "qwen"


def test_openai_compatible_stt_and_tts(tmp_path):
    text = CONVERSATION + (
        "models:\n"
        "  stt: {engine: openai, base_url: 'http://10.0.0.7:8000/v1', model: large-v3, api_key: '${KEY}',"
        " timeout_s: 5, language: de}\n"
        "  tts: {engine: openai, base_url: 'http://10.0.0.7:8000/v1', model: kokoro, voice: af_sky,"
        " response_format: pcm, sample_rate: 24000}\n")
    config = load_config(write(tmp_path, text), env={"KEY": "k3y"})
    m = config.models
    assert (m.stt_engine, m.stt_base_url, m.stt_model, m.stt_api_key, m.stt_timeout_s, m.stt_language) == (
        "openai", "http://10.0.0.7:8000/v1", "large-v3", "k3y", 5.0, "de")
    assert (m.tts_engine, m.tts_model, m.tts_voice, m.tts_response_format, m.tts_sample_rate, m.tts_timeout_s) == (
        "openai", "kokoro", "af_sky", "pcm", 24000, 10.0)
    assert m.llm_engine == "local"
    from gateway.conversation.settings import model_set_config

    models = model_set_config(m)
    assert models.stt_engine == "openai" and models.openai_stt.model == "large-v3"
    assert models.openai_stt.timeout_s == 5.0 and models.openai_stt.language == "de"
    assert models.tts_engine == "openai" and models.openai_tts.voice == "af_sky"
    assert models.openai_tts.response_format == "pcm" and models.tts.model_path is None


def test_local_engines_are_the_default(tmp_path):
    models = load_config(write(tmp_path, CONVERSATION), env={}).models
    assert models.stt_engine == models.tts_engine == "local"


SKILLS = """
sip:
  listen: "127.0.0.1:5080"
  default_agent: front-desk
  routes: {"2005": sales}
agents:
  front-desk:
    type: conversation
    greeting: "Hello"
    instructions: "Be brief."
    knowledge: ["KNOWLEDGE"]
    tools:
      - transfer: {targets: {billing: "sip:2003@pbx.example.com", operator: "sip:2000@pbx.example.com"}}
      - hangup
      - take_message
      - http: {name: order_status, description: "Look up an order", method: GET,
               url: "https://crm.local/orders/{order_id}", headers: {Authorization: "Bearer ${CRM_TOKEN}"},
               parameters: {order_id: {type: string, description: "The order number"}}, timeout_s: 5}
    dtmf: {"0": {transfer: operator}, "9": hangup}
  sales:
    type: conversation
    instructions: "Sell."
database: DATABASE
memory: {retention_days: 30}
"""


def skills_config(tmp_path: Path, **replace: str) -> str:
    (tmp_path / "kb").mkdir(exist_ok=True)
    text = SKILLS.replace("KNOWLEDGE", str(tmp_path / "kb")).replace("DATABASE", str(tmp_path / "vg.db"))
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def test_issue_4_contract_loads(tmp_path):
    config = load_config(write(tmp_path, skills_config(tmp_path)), env={"CRM_TOKEN": "t0k"})
    agent = config.agents["front-desk"]
    assert agent.knowledge == (str(tmp_path / "kb"),)
    assert set(agent.tools.specs) == {"transfer", "hangup", "take_message", "order_status"}
    assert agent.tools.transfer_targets["billing"] == "sip:2003@pbx.example.com"
    assert agent.tools.http["order_status"].headers["Authorization"] == "Bearer t0k"
    assert agent.dtmf["0"].transfer == "operator" and agent.dtmf["9"].hangup
    assert config.sip.routes == {"2005": "sales"}
    assert config.memory.database == str(tmp_path / "vg.db") and config.memory.retention_days == 30


@pytest.mark.parametrize(("change", "key", "expected"), [
    ({'"0": {transfer: operator}': '"0": {transfer: sales}'}, "agents.front-desk.dtmf.0.transfer",
     "a transfer target of this agent"),
    ({'"0": {transfer: operator}': '"12": {transfer: operator}'}, "agents.front-desk.dtmf.12", "a single keypad key"),
    ({"      - hangup\n": "      - teleport\n"}, "agents.front-desk.tools[1]", "unknown tool"),
    ({'knowledge: ["': 'knowledge: ["/nonexistent/'}, "agents.front-desk.knowledge[0]", "an existing file or folder"),
    ({"routes: {\"2005\": sales}": "routes: {\"2005\": nobody}"}, "sip.routes.2005", "the name of an agent"),
    ({"database: ": "database: mysql://db/x #"}, "database", "a SQLite file path or a PostgreSQL URI"),
])
def test_issue_4_config_errors_name_the_key(tmp_path, change, key, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, skills_config(tmp_path, **change)), env={"CRM_TOKEN": "t"})
    assert err.value.key == key and expected in str(err.value), str(err.value)


@pytest.mark.parametrize("database", [
    "postgresql://voicegate:${PG_PASSWORD}@db.example:5432/voicegate",
    "postgres://voicegate:${PG_PASSWORD}@db.example/voicegate?sslmode=require",
    "postgresql://voicegate@db.example/voicegate",  # password from PGPASSWORD or ~/.pgpass
])
def test_database_accepts_a_postgresql_uri_with_the_password_from_the_environment(tmp_path, database):
    config = load_config(write(tmp_path, skills_config(tmp_path, **{"database: ": f"database: {database} #"})),
                         env={"CRM_TOKEN": "t", "PG_PASSWORD": "s3cret"})
    assert config.memory.database == database.replace("${PG_PASSWORD}", "s3cret")


@pytest.mark.parametrize("database", ["mysql://root:s3cret@db/voicegate", "sqlite://vg.db", "redis://:s3cret@db"])
def test_database_refuses_other_uris_naming_file_key_and_expected_without_the_password(tmp_path, database):
    path = write(tmp_path, skills_config(tmp_path, **{"database: ": f"database: {database} #"}))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"CRM_TOKEN": "t"})
    message = str(err.value)
    assert err.value.key == "database" and err.value.file == str(path) and str(path) in message
    assert "a SQLite file path or a PostgreSQL URI (postgresql://" in message
    assert "s3cret" not in message


def test_database_password_variable_must_be_set(tmp_path):
    text = skills_config(tmp_path, **{"database: ": "database: postgresql://vg:${PG_PASSWORD}@db/vg #"})
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={"CRM_TOKEN": "t"})
    assert err.value.key == "database" and "PG_PASSWORD" in str(err.value)


def test_a_missing_secret_for_a_tool_header_names_the_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, skills_config(tmp_path)), env={})
    assert "CRM_TOKEN" in str(err.value) and "tools" in err.value.key


# --------------------------------------------------------------------------- TLS and SRTP


def _tls_files(tmp_path: Path, key_mode: int = 0o600) -> None:
    (tmp_path / "cert.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(key_mode)


TLS = """  tls:
    listen: "127.0.0.1:5061"
    certificate: cert.pem
    private_key: key.pem
"""


def test_tls_and_srtp_load_with_files_relative_to_the_config(tmp_path):
    _tls_files(tmp_path)
    text = CONTRACT.replace("  max_calls: 4\n", "  max_calls: 4\n" + TLS).replace(
        "  port_range: [31000, 31999]\n", "  port_range: [31000, 31999]\n  srtp: required\n")
    config = load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"})
    tls = config.sip.tls
    assert tls is not None and tls.listen.port == 5061 and not tls.verify_peer and not tls.verify_server
    assert tls.certificate == str(tmp_path / "cert.pem") and tls.private_key == str(tmp_path / "key.pem")
    assert config.rtp.srtp == "required"


def test_srtp_defaults_off_and_a_bare_yaml_off_means_off(tmp_path):
    config = load_config(write(tmp_path, CONTRACT), env={"FRONT_DESK_PASSWORD": "x"})
    assert config.sip.tls is None and config.rtp.srtp == "off"
    text = CONTRACT.replace("  port_range: [31000, 31999]\n", "  port_range: [31000, 31999]\n  srtp: off\n")
    assert load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"}).rtp.srtp == "off"


@pytest.mark.parametrize(("mode", "edit", "key", "expected"), [
    (0o644, lambda t: t, "sip.tls.private_key", "only its owner can access (mode is 644"),
    (0o600, lambda t: t.replace("key.pem", "missing.pem"), "sip.tls.private_key", "a readable file"),
    (0o600, lambda t: t.replace("    certificate: cert.pem\n", ""), "sip.tls.certificate", "this key to be set"),
    (0o600, lambda t: t + "    verify_peer: true\n", "sip.tls.ca_list", "the CA file"),
    (0o600, lambda t: t + "    verify_server: true\n", "sip.tls.ca_list", "verify_server is true"),
    (0o600, lambda t: t.replace('"127.0.0.1:5061"', '"5061"'), "sip.tls.listen", "host:port"),
])
def test_tls_errors_name_the_key(tmp_path, mode, edit, key, expected):
    _tls_files(tmp_path, mode)
    text = CONTRACT.replace("  max_calls: 4\n", "  max_calls: 4\n" + edit(TLS))
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"})
    assert err.value.key == key and expected in str(err.value) and str(tmp_path / "gw.yaml") in str(err.value)


def test_srtp_mode_is_checked(tmp_path):
    text = CONTRACT.replace("  port_range: [31000, 31999]\n", "  port_range: [31000, 31999]\n  srtp: on\n")
    with pytest.raises(ConfigError, match="rtp.srtp: expected one of off, optional, required"):
        load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"})


def test_rtp_codecs_accept_opus_and_keep_the_default_order(tmp_path):
    assert load_config(write(tmp_path, CONTRACT), env={"FRONT_DESK_PASSWORD": "x"}).rtp.codecs == (
        "G722", "PCMU", "PCMA")
    text = CONTRACT.replace("  port_range: [31000, 31999]\n", "  port_range: [31000, 31999]\n  codecs: [opus, G722]\n")
    assert load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"}).rtp.codecs == ("OPUS", "G722")
    text = CONTRACT.replace("  port_range: [31000, 31999]\n", "  port_range: [31000, 31999]\n  codecs: [G729]\n")
    with pytest.raises(ConfigError, match=r"rtp.codecs\[0\]: expected one of OPUS, G722, PCMU, PCMA"):
        load_config(write(tmp_path, text), env={"FRONT_DESK_PASSWORD": "x"})


def test_secrets_typed_into_a_readable_config_are_refused(tmp_path):
    inline = CONTRACT.replace('"${FRONT_DESK_PASSWORD}"', '"s3cret"')
    path = write(tmp_path, inline)
    path.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert err.value.key == "sip.accounts[0].password" and "chmod 600" in str(err.value)
    assert "s3cret" not in str(err.value)
    path.chmod(0o600)
    assert load_config(path, env={}).sip.accounts[0].password == "s3cret"
    # from the environment, a readable file is fine: the secret is not in it
    readable = write(tmp_path, CONTRACT)
    readable.chmod(0o644)
    assert load_config(readable, env={"FRONT_DESK_PASSWORD": "x"}).sip.accounts[0].password == "x"


@pytest.mark.parametrize(("database", "refused"), [
    ("postgresql://vg:hunter2@db.example/vg", True),
    ("postgresql://vg:${PGPW}@db.example/vg", False),
    ("postgresql://vg@db.example/vg", False),
    ("/var/lib/voicegate/vg.db", False),
])
def test_a_database_password_typed_into_a_readable_config_is_refused(tmp_path, database, refused):
    path = write(tmp_path, CONTRACT + f'database: "{database}"\n')
    path.chmod(0o644)
    env = {"FRONT_DESK_PASSWORD": "x", "PGPW": "pw"}
    if refused:
        with pytest.raises(ConfigError) as err:
            load_config(path, env=env)
        assert err.value.key == "database" and "hunter2" not in str(err.value)
    else:
        assert load_config(path, env=env).memory.database


def test_a_ca_list_turns_server_verification_on_unless_said_otherwise(tmp_path):
    _tls_files(tmp_path)
    with_ca = TLS + "    ca_list: cert.pem\n"
    config = load_config(write(tmp_path, CONTRACT.replace("  max_calls: 4\n", "  max_calls: 4\n" + with_ca)),
                         env={"FRONT_DESK_PASSWORD": "x"})
    assert config.sip.tls.verify_server and not config.sip.tls.verify_peer
    off = with_ca + "    verify_server: false\n"
    config = load_config(write(tmp_path, CONTRACT.replace("  max_calls: 4\n", "  max_calls: 4\n" + off)),
                         env={"FRONT_DESK_PASSWORD": "x"})
    assert not config.sip.tls.verify_server


def test_a_secret_default_typed_into_a_readable_config_is_refused(tmp_path):
    path = write(tmp_path, CONTRACT.replace('"${FRONT_DESK_PASSWORD}"', '"${FRONT_DESK_PASSWORD:-s3cret}"'))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_config(path, env={"FRONT_DESK_PASSWORD": "x"})


def test_a_database_password_with_a_slash_typed_into_a_readable_config_is_refused(tmp_path):
    """A password typed as is (not percent-encoded) with "/" in it is still seen as a password."""
    path = write(tmp_path, CONTRACT + 'database: "postgresql://vg:hun/ter#2@db.example/vg"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"FRONT_DESK_PASSWORD": "x"})
    assert err.value.key == "database" and "hun/ter" not in str(err.value) and "chmod 600" in str(err.value)


@pytest.mark.parametrize("database", [
    "host=db.example dbname=voicegate user=vg",
    "dbname=voicegate password=s3cret",
    "host = db.example port=5432 sslmode=require",
])
def test_database_refuses_libpq_key_value_settings_instead_of_making_a_sqlite_file(tmp_path, database):
    """libpq's key=value form is not a URI: taken as a path it would silently become a SQLite file."""
    path = write(tmp_path, skills_config(tmp_path, **{"database: ": f'database: "{database}" #'}))
    with pytest.raises(ConfigError) as err:
        load_config(path, env={"CRM_TOKEN": "t"})
    message = str(err.value)
    assert err.value.key == "database" and "a PostgreSQL URI (postgresql://" in message, message
    assert "s3cret" not in message


def test_database_path_with_an_equals_sign_is_still_a_sqlite_file(tmp_path):
    config = load_config(write(tmp_path, skills_config(tmp_path, **{"vg.db": "vg=1.db"})), env={"CRM_TOKEN": "t"})
    assert config.memory.database == str(tmp_path / "vg=1.db")
