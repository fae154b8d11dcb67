"""Parsing edges, behaviour doc sections 1.1-1.4: framing, command recognition,
integer parsing, tube names."""

from harness import S, cmd, contains, eof, put, recv, send, silent

BF = "BAD_FORMAT\r\n"
UC = "UNKNOWN_COMMAND\r\n"
USING_DEFAULT = "USING default\r\n"

SCENARIOS = []
add = SCENARIOS.append

# ---------------------------------------------------------------- 1.1 framing
add(S("line_222_chars_accepted",
      cmd(b"put" + b" " * 212 + b"0 0 0 1\r\nx\r\n", exp="INSERTED 1\r\n"),
      cmd("peek 1", exp="FOUND 1 1\r\nx\r\n")))

add(S("line_223_chars_quirk_swallows_next_command_same_packet",
      cmd(b"b" * 223 + b"\r\nlist-tube-used\r\n", exp=BF),
      silent(t=0.3),
      cmd("list-tube-used", exp=USING_DEFAULT)))

add(S("line_223_chars_quirk_swallows_next_command_separate_packets",
      send(b"b" * 223 + b"\r\n"),
      silent(t=0.3),
      send("list-tube-used"),
      recv(exp=BF),
      silent(t=0.2),
      cmd("list-tube-used", exp=USING_DEFAULT)))

add(S("line_223_chars_put_header_eats_body",
      send(b"put" + b" " * 213 + b"0 0 0 1\r\n"),
      silent(t=0.2),
      cmd(b"x\r\n", exp=BF),
      silent(t=0.2),
      cmd("peek 1", exp="NOT_FOUND\r\n")))

add(S("line_224_chars_bad_format_next_ok",
      cmd(b"a" * 224 + b"\r\nlist-tube-used\r\n", n=2, exp=BF + USING_DEFAULT)))

add(S("line_overlong_1000_chars_in_pieces",
      send(b"z" * 300),
      silent(t=0.2),
      send(b"z" * 700),
      silent(t=0.2),
      send(b"\r"),
      silent(t=0.2),
      send(b"\nlist-tube-used\r\n"),
      recv(n=2, exp=BF + USING_DEFAULT)))

add(S("line_overlong_put_header_body_is_next_command",
      cmd(b"put 0 0 0 1" + b" " * 300 + b"\r\nx\r\n", n=2, exp=BF + UC)))

add(S("line_stray_cr_stalls_until_224_bytes",
      send(b"stats\rx\r\nlist-tube-used\r\n"),
      silent(t=0.3),
      send(b"a" * 300),
      silent(t=0.2),
      send(b"\r\nlist-tube-used\r\n"),
      recv(n=2, exp=BF + USING_DEFAULT)))

add(S("line_stray_cr_exactly_filling_224_bytes",
      send(b"use\rfoo\r\n" + b"k" * (224 - 9)),
      silent(t=0.3),
      send(b"\r\nlist-tube-used\r\n"),
      recv(n=2, exp=BF + USING_DEFAULT)))

add(S("line_stray_cr_filling_223_bytes_then_crlf_quirk",
      send(b"use\rfoo\r\n" + b"k" * (223 - 9)),
      silent(t=0.3),
      send(b"\r\nlist-tube-used\r\n"),
      recv(exp=BF),
      silent(t=0.2),
      cmd("list-tube-used", exp=USING_DEFAULT)))

add(S("line_bare_lf_is_not_a_terminator",
      cmd(b"stats\nstats\r\n", exp=BF),
      cmd(b"list-tube-used\n\r\n", exp=BF),
      cmd(b"\nlist-tube-used\r\n", exp=UC)))

add(S("line_lf_only_gets_no_reply",
      send(b"list-tube-used\n"),
      silent(t=0.3),
      send(b"list-tube-used\r\n"),
      recv(exp=BF)))

add(S("line_nul_in_command_line",
      cmd(b"use de\x00fault\r\n", exp=BF),
      cmd(b"list-tube-used\x00\r\n", exp=BF),
      cmd(b"\x00\r\n", exp=BF),
      cmd(b"peek\x00 1\r\n", exp=BF),
      cmd(b"foo\x00bar\r\n", exp=BF),
      cmd("list-tube-used", exp=USING_DEFAULT)))

add(S("line_empty_lines",
      cmd(b"\r\n", exp=UC),
      cmd(b"\r\n\r\n\r\n", n=3, exp=UC * 3),
      cmd(b" \r\n", exp=UC)))

add(S("line_commands_are_case_sensitive",
      cmd("STATS", exp=UC),
      cmd("Stats", exp=UC),
      cmd("LIST-TUBES", exp=UC),
      cmd("USE default", exp=UC),
      cmd(b"PUT 0 0 0 1\r\nx\r\n", n=2, exp=UC + UC),
      cmd("Quit", exp=UC)))

add(S("line_leading_space_unknown",
      cmd(" stats", exp=UC),
      cmd(" list-tube-used", exp=UC)))

add(S("line_cr_cr_lf_stalls",
      send(b"list-tube-used\r\r\n"),
      silent(t=0.3),
      send(b"x" * 300 + b"\r\nlist-tube-used\r\n"),
      recv(n=2, exp=BF + USING_DEFAULT)))

# --------------------------------------------------- 1.2 command recognition
for c in ["use", "delete", "kick", "peek", "touch", "bury", "release", "watch",
          "ignore", "kick-job", "put"]:
    add(S(f"prefix_bare_{c}_unknown", cmd(c, exp=UC), cmd("list-tube-used", exp=USING_DEFAULT)))

for line in ["reserve-with-timeout", "reserve-job", "stats ", "statsx", "stats-tubex",
             "stats-tube", "stats-job", "stats-jobx 1", "pause-tube", "pause-tube ",
             "reservex", "reserve x", "reserve ", "list-tubes x", "list-tubesx",
             "peek-ready x", "peek-readyx", "peek-delayed 1", "peek-buried ",
             "list-tube-used x", "list-tubes-watchedx", "reserve-with-timeout5",
             "reserve-job5", "stats-tube-x default"]:
    slug = line.replace(" ", "_sp_").rstrip("_")
    add(S(f"prefix_bad_format[{slug}]", cmd(line, exp=BF),
          cmd("list-tube-used", exp=USING_DEFAULT)))

for line in ["foo", "list-tube", "peek-", "kick-job5", "deletex 1", "use-x", "watching default",
             "touchy 1", "quiT", "qui", "stat"]:
    slug = line.replace(" ", "_sp_")
    add(S(f"prefix_unknown[{slug}]", cmd(line, exp=UC),
          cmd("list-tube-used", exp=USING_DEFAULT)))

for q in ["quit", "quitxyz", "quit now", "quit "]:
    add(S(f"quit_variant[{q.replace(' ', '_sp_')}]",
          put("x", exp="INSERTED 1\r\n"),
          send(q), eof(exp=b"")))

add(S("quit_pipelined_replies_before_quit_then_dropped",
      send(b"list-tube-used\r\nquit\r\nlist-tube-used\r\n"),
      recv(exp=USING_DEFAULT),
      eof(exp=b"")))

add(S("quit_after_several_pipelined_commands",
      send(b"use t\r\nput 0 0 0 1\r\nx\r\nlist-tube-used\r\nquitnow\r\nput 0 0 0 1\r\ny\r\n"),
      recv(n=3, exp="USING t\r\nINSERTED 1\r\nUSING t\r\n"),
      eof(exp=b""),
      cmd("peek 2", c="b", exp="NOT_FOUND\r\n"),
      cmd("stats-job 1", c="b", exp=contains("tube: t\n"))))

add(S("pause_tube_without_space",
      cmd("pause-tubedefault 0", exp="PAUSED\r\n"),
      cmd("stats-tube default", exp=contains("cmd-pause-tube: 1\n"))))

add(S("put_with_tab_separator_unknown",
      cmd(b"put\t0 0 0 1\r\nx\r\n", n=2, exp=UC + UC)))

# -------------------------------------------------------- 1.3 integer parsing
# put: rows of the table (reply to the header, then to the body line "x")
# (slug, header, replies to header + body line "x", cmd-put afterwards)
# NB: cmd-put is counted once the four numbers parse, so the trailing-garbage
# BAD_FORMATs still count (not in the behaviour doc; observed on 1.12).
PUT_ROWS = [
    ("plus_pri", b"put +1 0 0 1", BF + UC, 0),
    ("neg_pri", b"put -1 0 0 1", BF + UC, 0),
    ("neg_delay", b"put 0 -1 0 1", BF + UC, 0),
    ("neg_ttr", b"put 0 0 -1 1", BF + UC, 0),
    ("neg_bytes", b"put 0 0 0 -1", BF + UC, 0),
    ("several_spaces", b"put  0  0  0  1", "INSERTED 1\r\n", 1),
    ("trailing_space", b"put 0 0 0 1 ", BF + UC, 1),
    ("trailing_garbage", b"put 0 0 0 1x", BF + UC, 1),
    ("extra_arg", b"put 0 0 0 1 2", BF + UC, 1),
    ("tab_before_number", b"put 0\t0 0 1", BF + UC, 0),
    ("tab_before_bytes", b"put 0 0 0\t1", BF + UC, 0),
    ("hex", b"put 0x10 0 0 1", BF + UC, 0),
    ("exp_notation", b"put 1e3 0 0 1", BF + UC, 0),
    ("pri_4294967296", b"put 4294967296 0 0 1", BF + UC, 0),
    ("delay_4294967296", b"put 0 4294967296 0 1", BF + UC, 0),
    ("ttr_4294967296", b"put 0 0 4294967296 1", BF + UC, 0),
    ("missing_arg", b"put 0 0 1", BF + UC, 0),
    ("empty_args", b"put ", BF + UC, 0),
    ("leading_zeros", b"put 010 0 0 1", "INSERTED 1\r\n", 1),
]
for slug, hdr, exp, nput in PUT_ROWS:
    add(S(f"int_put[{slug}]",
          cmd(hdr + b"\r\nx\r\n", n=exp.count("\r\n"), exp=exp),
          cmd("stats", exp=contains("cmd-put: %d\n" % nput)),
          cmd("peek 1")))

add(S("int_put_leading_zero_pri_is_decimal",
      put("x", pri=0, exp="INSERTED 1\r\n"),
      cmd(b"put 0010 0 0 1\r\ny\r\n", exp="INSERTED 2\r\n"),
      cmd("stats-job 2", exp=contains("pri: 10\n"))))

# one-id commands (delete/peek/touch/kick-job/stats-job/reserve-job): ten jobs exist
TEN = b"".join(b"put 0 0 60 1\r\n%d\r\n" % (i % 10) for i in range(10))
ID_ROWS = [
    ("plus", b"+1"), ("neg", b"-1"), ("two_spaces", b" 5"), ("trailing_space", b"5 "),
    ("trailing_garbage", b"111foo"), ("tab", b"\t1"), ("empty", b""), ("leading_zero", b"010"),
    ("hex", b"0x10"), ("exp", b"1e3"), ("u64max", b"18446744073709551615"),
    ("u64max_plus_1", b"18446744073709551616"), ("huge", b"99999999999999999999999"),
    ("zero", b"0"), ("extra_arg", b"1 2"),
]
for verb in ["delete", "peek", "kick-job", "stats-job", "reserve-job", "touch"]:
    rows = ID_ROWS if verb in ("delete", "peek") else [r for r in ID_ROWS if r[0] in (
        "plus", "trailing_space", "leading_zero", "u64max", "u64max_plus_1", "hex", "empty")]
    for slug, arg in rows:
        add(S(f"int_{verb}[{slug}]",
              send(TEN), recv(n=10),
              cmd(verb.encode() + b" " + arg + b"\r\n"),
              cmd("list-tube-used", exp=USING_DEFAULT)))

add(S("int_delete_decimal_010_deletes_job_10",
      send(TEN), recv(n=10),
      cmd("delete 010", exp="DELETED\r\n"),
      cmd("peek 10", exp="NOT_FOUND\r\n"),
      cmd("delete  5", exp="DELETED\r\n"),
      cmd("delete 5 ", exp=BF),
      cmd("delete +1", exp=BF),
      cmd("delete 18446744073709551615", exp="NOT_FOUND\r\n"),
      cmd("delete 18446744073709551616", exp=BF)))

# release / bury with bad numbers (a job reserved by this conn)
for slug, line, exp in [
    ("release_plus_pri", "release 1 +0 0", BF),
    ("release_neg_delay", "release 1 0 -1", BF),
    ("release_delay_4294967296", "release 1 0 4294967296", BF),
    ("release_trailing_space", "release 1 0 0 ", BF),
    ("release_missing_delay", "release 1 0", BF),
    ("release_u32max_pri", "release 1 4294967295 0", "RELEASED\r\n"),
    ("release_spaces", "release  1  5  0", "RELEASED\r\n"),
    ("bury_garbage", "bury 1 1x", BF),
    ("bury_missing_pri", "bury 1", BF),
    ("bury_u32max_pri", "bury 1 4294967295", "BURIED\r\n"),
    ("bury_pri_4294967296", "bury 1 4294967296", BF),
    ("touch_trailing_garbage", "touch 1x", BF),
]:
    add(S(f"int_{slug}",
          put("x", exp="INSERTED 1\r\n"),
          cmd("reserve", exp="RESERVED 1 1\r\nx\r\n"),
          cmd(line, exp=exp),
          cmd("stats-job 1")))

# reserve-with-timeout rows where 1.12 and 1.13 agree
add(S("rwt_zero_immediate_timed_out",
      cmd("reserve-with-timeout 0", exp="TIMED_OUT\r\n"),
      cmd("reserve-with-timeout 00", exp="TIMED_OUT\r\n"),
      put("x"),
      cmd("reserve-with-timeout 0", exp="RESERVED 1 1\r\nx\r\n")))

add(S("rwt_trailing_garbage_accepted",
      cmd("reserve-with-timeout 0abc", exp="TIMED_OUT\r\n"),
      cmd("reserve-with-timeout 0 xyz", exp="TIMED_OUT\r\n"),
      put("x"),
      cmd("reserve-with-timeout 0abc", exp="RESERVED 1 1\r\nx\r\n")))

add(S("rwt_9223372036854775808_bad_format",
      cmd("reserve-with-timeout 9223372036854775808", exp=BF),
      cmd("stats", exp=contains("cmd-reserve-with-timeout: 0\n"))))

add(S("rwt_2147483647_waits_then_gets_job",
      send("reserve-with-timeout 2147483647", c="b", settle=0.15),
      silent(c="b", t=0.2),
      put("x", c="a", exp="INSERTED 1\r\n"),
      recv(c="b", exp="RESERVED 1 1\r\nx\r\n")))

# kick: strtoul parsing; 20 delayed jobs in the used tube
TWENTY_DELAYED = b"".join(b"put 0 100 60 1\r\nd\r\n" for _ in range(20))
for slug, arg, exp in [
    ("plus", b"+3", "KICKED 3\r\n"),
    ("minus_one_kicks_all", b"-1", "KICKED 20\r\n"),
    ("minus_4294967295_is_1", b"-4294967295", "KICKED 1\r\n"),
    ("trailing_space", b"2 ", "KICKED 2\r\n"),
    ("trailing_garbage", b"1abc", "KICKED 1\r\n"),
    ("tab", b"\t1", "KICKED 1\r\n"),
    ("two_spaces", b" 4", "KICKED 4\r\n"),
    ("empty", b"", BF),
    ("only_spaces", b"   ", BF),
    ("letters", b"abc", BF),
    ("leading_zeros", b"010", "KICKED 10\r\n"),
    ("hex_reads_0", b"0x10", "KICKED 0\r\n"),
    ("exp_reads_1", b"1e3", "KICKED 1\r\n"),
    ("u32_wrap_0", b"4294967296", "KICKED 0\r\n"),
    ("u32_wrap_1", b"4294967297", "KICKED 1\r\n"),
    ("erange", b"99999999999999999999", BF),
    ("zero", b"0", "KICKED 0\r\n"),
    ("big", b"1000", "KICKED 20\r\n"),
]:
    add(S(f"int_kick[{slug}]",
          send(TWENTY_DELAYED), recv(n=20),
          cmd(b"kick " + arg + b"\r\n", exp=exp),
          cmd("stats-tube default"),
          cmd("stats", exp=contains("cmd-kick: %d\n" % (0 if exp == BF else 1)))))

# pause-tube argument parsing
for slug, line, exp in [
    ("spaces_everywhere", "pause-tube   default    0", "PAUSED\r\n"),
    ("trailing_space", "pause-tube default 0 ", BF),
    ("plus", "pause-tube default +1", BF),
    ("neg", "pause-tube default -1", BF),
    ("hex", "pause-tube default 0x1", BF),
    ("u32max", "pause-tube default 4294967295", "PAUSED\r\n"),
    ("u32max_plus_1", "pause-tube default 4294967296", BF),
    ("missing_delay", "pause-tube default", BF),
    ("missing_delay_space", "pause-tube default ", BF),
    ("not_found", "pause-tube nosuchtube 1", "NOT_FOUND\r\n"),
    ("not_found_bad_delay", "pause-tube nosuchtube x", BF),
    ("tab_separator", "pause-tube default\t1", BF),
    ("name_then_garbage", "pause-tube default! 1", BF),
]:
    add(S(f"pause_tube_parse[{slug}]",
          cmd(line, exp=exp),
          cmd("stats-tube default")))

# -------------------------------------------------------------- 1.4 tube names
N200 = "t" * 200
N201 = "t" * 201
BAD_NAMES = [("201_bytes", N201), ("leading_dash", "-foo"), ("bang", "foo!"),
             ("space_inside", "foo bar"), ("empty", ""), ("star", "a*"), ("hash", "a#b"),
             ("high_byte", "f\xf6o"), ("tab", "a\tb"), ("comma", "a,b")]
for verb in ["use", "watch", "ignore", "stats-tube", "pause-tube"]:
    for slug, name in BAD_NAMES:
        if verb in ("ignore", "stats-tube") and slug in ("star", "hash", "tab", "comma"):
            continue
        line = f"{verb} {name}" + (" 0" if verb == "pause-tube" else "")
        add(S(f"tube_name_{verb}[{slug}]",
              cmd(line.encode("latin-1") + b"\r\n"),
              cmd("list-tubes")))

add(S("tube_name_200_bytes_ok_everywhere",
      cmd(f"use {N200}", exp=f"USING {N200}\r\n"),
      cmd(f"watch {N200}", exp="WATCHING 2\r\n"),
      cmd(f"stats-tube {N200}", exp=contains(f"name: {N200}\n")),
      cmd(f"pause-tube {N200} 4294967295", exp="PAUSED\r\n"),
      cmd("list-tubes-watched"),
      cmd("list-tubes"),
      cmd("list-tube-used", exp=f"USING {N200}\r\n"),
      cmd(f"ignore {N200}", exp="WATCHING 1\r\n")))

add(S("tube_name_all_allowed_chars",
      cmd("use AZaz09-+/;.$_()", exp="USING AZaz09-+/;.$_()\r\n"),
      cmd("watch ()$_;.+/-", exp="WATCHING 2\r\n"),
      cmd("list-tubes"),
      cmd("list-tubes-watched")))

add(S("tube_name_whole_rest_of_line",
      cmd("use  foo", exp=BF),
      cmd("use foo ", exp=BF),
      cmd("use foo bar", exp=BF),
      cmd("watch  foo", exp=BF),
      cmd("ignore default ", exp=BF),
      cmd("stats-tube default ", exp=BF),
      cmd("stats-tube  default", exp=BF),
      cmd("list-tube-used", exp=USING_DEFAULT)))

add(S("tube_names_case_sensitive",
      cmd("use Foo", exp="USING Foo\r\n"),
      cmd("watch foo", exp="WATCHING 2\r\n"),
      cmd("watch FOO", exp="WATCHING 3\r\n"),
      cmd("list-tubes"),
      cmd("stats-tube fOO", exp="NOT_FOUND\r\n")))

add(S("tube_name_dash_not_leading_ok",
      cmd("use a-", exp="USING a-\r\n"),
      cmd("watch a-b-c", exp="WATCHING 2\r\n"),
      cmd("use -", exp=BF)))
