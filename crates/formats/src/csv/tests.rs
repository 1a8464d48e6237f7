//! The splitter is checked on every corner of the grammar, each input fed whole, byte by byte and
//! cut at every single offset (the outcome must never depend on the cuts), and by property
//! against the rendering of random records.

use proptest::prelude::*;

use super::*;

/// What the splitter reported for one record, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Rec {
        number: u64,
        line: u64,
        terminated: bool,
        raw: String,
        fields: Vec<String>,
    },
    Bad {
        number: u64,
        line: u64,
        raw: Vec<u8>,
        problem: Problem,
    },
}

/// Splits `input` cut at `cuts`; `Err(line)` when it ends inside a quoted field opened there.
fn split_cuts(input: &[u8], cuts: &[usize], max: usize) -> Result<Vec<Item>, u64> {
    let mut s = CsvSplitter::new(max);
    let mut items = Vec::new();
    let mut f = |row: Row<'_>| -> Result<(), u64> {
        items.push(match row {
            Ok(r) => Item::Rec {
                number: r.number(),
                line: r.line(),
                terminated: r.terminated(),
                raw: r.raw().to_string(),
                fields: (0..r.len().min(MAX_FIELDS)).map(|i| r.field(i).to_string()).collect(),
            },
            Err(b) => Item::Bad {
                number: b.number,
                line: b.line,
                raw: b.raw.to_vec(),
                problem: b.problem,
            },
        });
        Ok(())
    };
    let mut start = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.sort_unstable();
    for c in cuts.into_iter().chain([input.len()]) {
        s.push(&input[start..c], &mut f)?;
        assert!(s.held() <= max, "never holds more than one record up to the limit");
        start = c;
    }
    s.finish(&mut f, |line| line)?;
    Ok(items)
}

/// Splits `input` whole, and checks that byte-by-byte and every single cut agree.
fn split_max(input: &[u8], max: usize) -> Result<Vec<Item>, u64> {
    let whole = split_cuts(input, &[], max);
    let bytes: Vec<usize> = (0..input.len()).collect();
    assert_eq!(split_cuts(input, &bytes, max), whole, "byte by byte: {input:?}");
    for at in 0..=input.len() {
        assert_eq!(split_cuts(input, &[at], max), whole, "cut at {at}: {input:?}");
    }
    whole
}

fn split(input: &str) -> Vec<Item> {
    split_max(input.as_bytes(), 1 << 20).unwrap()
}

/// The fields of every record, when all are good.
fn fields(input: &str) -> Vec<Vec<String>> {
    split(input)
        .into_iter()
        .map(|item| match item {
            Item::Rec { fields, .. } => fields,
            bad => panic!("unexpected {bad:?} in {input:?}"),
        })
        .collect()
}

fn strs(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|r| r.iter().map(|f| f.to_string()).collect()).collect()
}

#[test]
fn plain_and_quoted_fields() {
    assert_eq!(
        fields("a,b,c\r\n1,2,3\r\n"),
        strs(&[&["a", "b", "c"], &["1", "2", "3"]])
    );
    assert_eq!(
        fields("\"a,1\",\"say \"\"hi\"\"\",\"\"\"\"\n"),
        strs(&[&["a,1", "say \"hi\"", "\""]])
    );
    // Line breaks of both kinds and a lone CR inside quotes are text.
    assert_eq!(
        fields("\"line 1\r\nline 2\nline 3\rend\",x\r\n"),
        strs(&[&["line 1\r\nline 2\nline 3\rend", "x"]])
    );
    // Empty fields, quoted or not, at every position.
    assert_eq!(fields(",,\n\"\",\"\",\"\"\n"), strs(&[&["", "", ""], &["", "", ""]]));
    assert_eq!(fields("a,\r\n"), strs(&[&["a", ""]]));
    // A quote inside an unquoted field is text; so is a CR not followed by LF.
    assert_eq!(fields("5\" disk,a\rb\n"), strs(&[&["5\" disk", "a\rb"]]));
    // Japanese text, and multi-byte characters next to delimiters.
    assert_eq!(
        fields("操作ID,\"変更,前\"\r\n日本語,\"「\"\"引用\"\"」\"\r\n"),
        strs(&[&["操作ID", "変更,前"], &["日本語", "「\"引用\"」"]])
    );
}

#[test]
fn the_last_record_may_lack_its_line_ending() {
    for (input, last) in [
        ("a,b\nc,d", vec!["c", "d"]),
        ("a,b\nc,\"d\"", vec!["c", "d"]),
        ("a,b\nc,", vec!["c", ""]),
        ("a,b\nc,d\r", vec!["c", "d"]),
        ("a,b\nc,\"d\"\r", vec!["c", "d"]),
    ] {
        let items = split(input);
        assert_eq!(items.len(), 2, "{input:?}");
        match &items[1] {
            Item::Rec { fields, terminated, .. } => {
                assert_eq!(fields, &last, "{input:?}");
                assert!(!terminated);
            }
            bad => panic!("{bad:?}"),
        }
    }
    assert!(split("").is_empty());
    assert!(split("\r\n\n").is_empty(), "empty lines are not records");
}

#[test]
fn numbers_and_lines_count_rows_and_line_breaks() {
    let items = split("h1,h2\r\n\"a\nb\",c\r\n\r\nd,\"e\r\n\r\nf\"\r\ng,h");
    let got: Vec<(u64, u64, String)> = items
        .iter()
        .map(|i| match i {
            Item::Rec { number, line, raw, .. } => (*number, *line, raw.clone()),
            bad => panic!("{bad:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, 1, "h1,h2".to_string()),
            (2, 2, "\"a\nb\",c".to_string()),
            // Record 3 is the empty line 4.
            (4, 5, "d,\"e\r\n\r\nf\"".to_string()),
            (5, 8, "g,h".to_string()),
        ]
    );
}

#[test]
fn a_leading_byte_order_mark_is_dropped_wherever_the_chunks_end() {
    assert_eq!(fields("\u{FEFF}a,b\n"), strs(&[&["a", "b"]]));
    assert_eq!(fields("\u{FEFF}\"a\",b\n"), strs(&[&["a", "b"]]));
    // Only at the very start: a second one is text.
    assert_eq!(fields("\u{FEFF}\u{FEFF}a\n"), strs(&[&["\u{FEFF}a"]]));
    assert_eq!(fields("a,\u{FEFF}\n"), strs(&[&["a", "\u{FEFF}"]]));
    assert!(split("\u{FEFF}").is_empty());
    // The start of a mark that is not one is kept (here it is not UTF-8).
    let items = split_max(b"\xEF\xBBa,b\n", 100).unwrap();
    assert!(matches!(
        &items[..],
        [Item::Bad {
            problem: Problem::InvalidUtf8 { at: 0 },
            ..
        }]
    ));
    let items = split_max(b"\xEF", 100).unwrap();
    assert!(matches!(&items[..], [Item::Bad { raw, .. }] if raw == b"\xEF"));
}

#[test]
fn text_after_a_closing_quote_makes_the_record_bad_not_the_file() {
    let items = split("a,\"b\"c,d\n\"x\"\ry\ne,f\n");
    assert_eq!(
        items,
        [
            Item::Bad {
                number: 1,
                line: 1,
                raw: b"a,\"b\"c,d".to_vec(),
                problem: Problem::TextAfterQuote { field: 2 }
            },
            Item::Bad {
                number: 2,
                line: 2,
                raw: b"\"x\"\ry".to_vec(),
                problem: Problem::TextAfterQuote { field: 1 }
            },
            Item::Rec {
                number: 3,
                line: 3,
                terminated: true,
                raw: "e,f".into(),
                fields: vec!["e".into(), "f".into()]
            },
        ]
    );
}

#[test]
fn invalid_utf8_is_found_even_split_inside_a_character() {
    let mut input = "ok,日本\n".as_bytes().to_vec();
    input.extend(b"x,\xE6\x97\n");
    input.extend("\"語\",y\n".as_bytes());
    let items = split_max(&input, 100).unwrap();
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[0], Item::Rec { fields, .. } if fields == &["ok", "日本"]));
    assert_eq!(
        items[1],
        Item::Bad {
            number: 2,
            line: 2,
            raw: b"x,\xE6\x97".to_vec(),
            problem: Problem::InvalidUtf8 { at: 2 }
        }
    );
    assert!(matches!(&items[2], Item::Rec { fields, .. } if fields == &["語", "y"]));
}

#[test]
fn input_ending_inside_quotes_names_the_line_the_field_opened_on() {
    assert_eq!(split_max(b"a,b\nc,\"d\ne", 100), Err(2));
    assert_eq!(split_max(b"a,\"", 100), Err(1));
    assert_eq!(split_max(b"a,\"x\"\"", 100), Err(1));
    // Even when the record is over the limit and skipped.
    assert_eq!(split_max(b"a\n\"0123456789\n", 5), Err(2));
}

#[test]
fn records_over_the_limit_are_bad_and_skipped_to_their_end() {
    let max = 10;
    // Exactly at the limit (the CR of a CRLF counts), then over it, in every form.
    let input = "0123456789\n012345678\r\n0123456789\r\n\"quoted\nover, with\nbreaks\"\nok\n01234567890";
    let items = split_max(input.as_bytes(), max).unwrap();
    let too_long = |number, line, raw: &str| Item::Bad {
        number,
        line,
        raw: raw.as_bytes().to_vec(),
        problem: Problem::TooLong { max },
    };
    let rec = |number, line, terminated, raw: &str| Item::Rec {
        number,
        line,
        terminated,
        raw: raw.into(),
        fields: vec![raw.into()],
    };
    assert_eq!(
        items,
        [
            rec(1, 1, true, "0123456789"),
            rec(2, 2, true, "012345678"),
            // The excerpt is the first max + 1 bytes, whatever the chunks were.
            too_long(3, 3, "0123456789\r"),
            too_long(4, 4, "\"quoted\nove"),
            rec(5, 7, true, "ok"),
            too_long(6, 8, "01234567890"),
        ]
    );
    // The excerpt is cut to MAX_EXCERPT for a large limit.
    let long = format!("{}\n", "x".repeat(3000));
    let items = split_max(long.as_bytes(), 1000).unwrap();
    assert!(matches!(&items[..], [Item::Bad { raw, .. }] if raw.len() == MAX_EXCERPT));
}

#[test]
fn fields_past_the_stored_maximum_are_counted() {
    let input = format!("{}\n", vec!["f"; MAX_FIELDS + 5].join(","));
    let mut s = CsvSplitter::new(1 << 20);
    let mut seen = None;
    s.push(input.as_bytes(), &mut |row: Row<'_>| -> Result<(), ()> {
        let r = row.unwrap();
        seen = Some((r.len(), r.field(MAX_FIELDS - 1).to_string()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, Some((MAX_FIELDS + 5, "f".to_string())));
}

#[test]
fn a_callback_error_stops_the_push() {
    let mut s = CsvSplitter::new(100);
    let mut calls = 0;
    let err = s.push(b"a\nb\nc\n", &mut |_row: Row<'_>| {
        calls += 1;
        Err("stop")
    });
    assert_eq!(err, Err("stop"));
    assert_eq!(calls, 1);
}

#[test]
fn integers() {
    assert_eq!(parse_i64("0"), Some(0));
    assert_eq!(parse_i64("-12"), Some(-12));
    assert_eq!(parse_i64("9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
    for bad in ["", "-", "+1", "1.0", " 1", "1 ", "9223372036854775808", "１", "0x10"] {
        assert_eq!(parse_i64(bad), None, "{bad}");
    }
    assert_eq!(show(&"あ".repeat(30)), format!("{}...", "あ".repeat(21)));
}

// ---- property: render random records, split them in random chunks, get the fields back ----

fn field_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            3 => proptest::sample::select(vec![',', '"', '\r', '\n', ' ']),
            2 => proptest::sample::select(vec!['日', '本', 'é', '😀', '\u{FEFF}']),
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// `f` as CSV: quoted when it must be (or when `always`), quotes doubled.
fn render_field(f: &str, always: bool) -> String {
    if always || f.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f.to_string()
    }
}

proptest! {
    #[test]
    fn random_records_split_back_into_their_fields(
        records in proptest::collection::vec(
            (proptest::collection::vec(field_text(), 1..6), any::<bool>(), any::<bool>()),
            0..12,
        ),
        final_newline in any::<bool>(),
        cuts in proptest::collection::vec(0usize..2000, 0..8),
    ) {
        let mut text = String::new();
        let mut expected = Vec::new();
        for (i, (fields, quote_all, crlf)) in records.iter().enumerate() {
            let line: Vec<String> = fields.iter().map(|f| render_field(f, *quote_all)).collect();
            let line = line.join(",");
            if line.is_empty() {
                // One empty unquoted field is an empty line, which is not a record.
            } else {
                expected.push(fields.clone());
            }
            text.push_str(&line);
            if i + 1 < records.len() || final_newline {
                text.push_str(if *crlf { "\r\n" } else { "\n" });
            }
        }
        // A text starting with a byte-order mark would lose it.
        prop_assume!(!text.starts_with('\u{FEFF}'));
        let got = split_cuts(text.as_bytes(), &cuts, 1 << 20).unwrap();
        let got: Vec<Vec<String>> = got
            .into_iter()
            .map(|i| match i {
                Item::Rec { fields, .. } => fields,
                bad => panic!("{bad:?}"),
            })
            .collect();
        prop_assert_eq!(got, expected);
    }
}
