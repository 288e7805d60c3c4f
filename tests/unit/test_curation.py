import copy

from test_records import record

from flywheel.config import CurationConfig
from flywheel.curation import PHONE_RE, curate, record_id, redact_text

MANY_PROPERTIES = {"type": "function", "function": {"name": "update_shipping_address", "parameters": {
    "type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(12)}}}}


def test_rules_are_counted_and_valid_records_kept():
    bad_args = record(query="a", arguments="{nope")
    missing = record(query="b")
    del missing["request"]
    no_tool = record(query="what are your hours?", tool=None)
    wide = record(query="move it", tool="update_shipping_address", arguments={"p1": "x"})
    wide["request"]["tools"] = [MANY_PROPERTIES]
    records = [record(query="Where is ORD-1?"), record(query="  where is ord-1 ", ts=5.0), bad_args, missing,
               no_tool, wide, record(query="Where is ORD-1?", arguments='{"order_id": "ORD-2"}')]
    result = curate(records, CurationConfig())
    c = result.counts
    assert result.total_in == c["total_in"] == 7
    assert (c["invalid_format"], c["arguments_not_json"], c["duplicate"]) == (1, 1, 1)
    assert c["invalid_by_reason"] == {"missing_field": 1, "arguments_not_json": 1}
    assert c["kept"] == len(result.rows) == 4
    assert c["no_tool_call"] == 1
    kept_queries = [r["request"]["messages"][0]["content"] for r in result.rows]
    # the first of a duplicate pair is kept; same query with different arguments is not a duplicate
    assert kept_queries == ["Where is ORD-1?", "what are your hours?", "move it", "Where is ORD-1?"]


def test_rows_are_normalised_with_stable_ids():
    raw = record()
    before = copy.deepcopy(raw)
    row = curate([raw], CurationConfig()).rows[0]
    assert row["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == {"order_id": "ORD-1"}
    assert "content" not in row["response"]["choices"][0]["message"]  # exclude_none
    assert len(row["record_id"]) == 16
    assert row["record_id"] == record_id({k: v for k, v in row.items() if k != "record_id"})
    assert curate([before], CurationConfig()).rows[0]["record_id"] == row["record_id"]
    assert raw == before


def test_parse_function_arguments_false_keeps_strings_and_skips_json_rule():
    result = curate([record(arguments="{nope")], CurationConfig(), parse_function_arguments=False)
    assert result.counts["arguments_not_json"] == 0
    assert result.rows[0]["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{nope"


def test_dedup_can_be_disabled():
    assert len(curate([record(), record()], CurationConfig(dedup=False)).rows) == 2
    assert len(curate([record(), record()], CurationConfig()).rows) == 1


def test_pii_redaction_only_when_enabled():
    text = "Mail jane.doe@example.co.uk or call +1 415-555-0123 / (415) 555-0199 about ORD-123456 SKU-2895"
    raw = record(query=text, arguments={"order_id": "ORD-123456", "phone": "+1 415-555-0123"})
    off = curate([raw], CurationConfig())
    assert off.counts["pii_redacted"] == 0
    assert off.rows[0]["request"]["messages"][0]["content"] == text
    on = curate([raw], CurationConfig(redact_pii=True))
    assert on.counts["pii_redacted"] == 1
    assert on.rows[0]["request"]["messages"][0]["content"] == (
        "Mail [EMAIL] or call [PHONE] / [PHONE] about ORD-123456 SKU-2895")
    args = on.rows[0]["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert args == {"order_id": "ORD-123456", "phone": "[PHONE]"}  # ground truth stays consistent
    assert raw["response"]["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]["phone"] != "[PHONE]"


def test_phone_pattern_ignores_identifiers():
    for text in ["ORD-123456", "1Z1234567890", "tracking 810642043808", "2026-01-15", "SKU-2895 qty 3", "M5V 2T6"]:
        assert not PHONE_RE.search(text), text
    assert redact_text("555-123-4567") == "[PHONE]"


def test_equal_tool_lists_are_shared_and_ids_depend_on_tools():
    a, b = record(query="one"), record(query="two")
    b["request"]["tools"] = copy.deepcopy(a["request"]["tools"])
    rows = curate([a, b], CurationConfig()).rows
    assert rows[0]["request"]["tools"] is rows[1]["request"]["tools"]
    other = copy.deepcopy(a)
    other["request"]["tools"][0]["function"]["description"] = "changed"
    assert curate([other], CurationConfig()).rows[0]["record_id"] != rows[0]["record_id"]
    assert curate([copy.deepcopy(a)], CurationConfig()).rows[0]["record_id"] == rows[0]["record_id"]


def multi_turn(query, earlier="Where is ORD-1?", tool_output='{"status": "shipped"}', call_id="call_0",
               earlier_args='{"order_id": "ORD-1"}', **kw):
    """A second question asked after an earlier exchange (user, assistant tool call, tool result)."""
    raw = record(query=query, **kw)
    system = {"role": "system", "content": "You are a helpful store assistant."}
    earlier_turns = [
        {"role": "user", "content": earlier},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "get_order_status", "arguments": earlier_args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": tool_output},
    ]
    raw["request"]["messages"] = [system, *earlier_turns, *raw["request"]["messages"]]
    return raw


def kept_count(records):
    return curate(records, CurationConfig()).counts["kept"]


def test_multi_turn_records_sharing_only_the_last_question_are_both_kept():
    last = "And when will it arrive?"
    assert kept_count([multi_turn(last), multi_turn(last, earlier="Where is ORD-2?")]) == 2
    assert kept_count([multi_turn(last), multi_turn(last, tool_output='{"status": "processing"}')]) == 2
    assert kept_count([multi_turn(last), multi_turn(last, earlier_args={"order_id": "ORD-9"})]) == 2
    assert kept_count([multi_turn(last), record(query=last)]) == 2  # same question with and without context


def test_true_duplicates_are_removed_whatever_the_call_ids_case_and_spacing():
    first = multi_turn("And when will it arrive?")
    again = multi_turn("  and WHEN will it arrive ", earlier="where is  ORD-1", call_id="call_xyz",
                       earlier_args={"order_id": "ORD-1"})  # same arguments as an object instead of JSON text
    again["request"]["messages"][0]["content"] = "A different system prompt is the setting, not the conversation."
    result = curate([first, again], CurationConfig())
    assert (result.counts["kept"], result.counts["duplicate"]) == (1, 1)
    assert result.rows[0]["request"]["messages"][-1]["content"] == "And when will it arrive?"  # the first is kept


def test_expected_call_order_does_not_matter_but_the_calls_do():
    def two_calls(first, second):
        raw = record(query="Check ORD-1 and ORD-2")
        raw["response"]["choices"][0]["message"]["tool_calls"] = [
            {"id": f"c{i}", "type": "function",
             "function": {"name": "get_order_status", "arguments": {"order_id": o}}}
            for i, o in enumerate((first, second))]
        return raw

    assert kept_count([two_calls("ORD-1", "ORD-2"), two_calls("ORD-2", "ORD-1")]) == 1
    assert kept_count([two_calls("ORD-1", "ORD-2"), two_calls("ORD-1", "ORD-3")]) == 2
