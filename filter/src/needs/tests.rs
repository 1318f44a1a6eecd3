use super::*;

fn scan(source: &str) -> InputNeeds {
    InputNeeds::scan([source])
}

#[test]
fn literal_references_need_only_their_group() {
    let plain = scan("allow if input.source_principal == \"a\"");
    assert_eq!(plain, InputNeeds::NONE);
    assert!(scan("allow if input.parsed_path[0] == \"a\"").parsed_path);
    let headers = scan("allow if input.attributes.request.http.headers[\"x\"] == \"1\"");
    assert_eq!(
        headers,
        InputNeeds {
            headers: true,
            ..InputNeeds::NONE
        }
    );
    let bracketed = scan("allow if input[\"attributes\"].request[`http`][\"host\"] == \"a\"");
    assert!(bracketed.host && !bracketed.headers);
    let some_in = scan("allow if { some k, v in input.attributes.request.http.headers; v }");
    assert!(some_in.headers && !some_in.host);
}

#[test]
fn comments_strings_and_fields_named_input_need_nothing() {
    let commented = "# reads input.attributes.request.http\nallow if input.a == \"#x\"\n";
    assert_eq!(scan(commented), InputNeeds::NONE);
    assert_eq!(
        scan("x := \"input\"\ny := data.input.z\n"),
        InputNeeds::NONE
    );
    assert_eq!(scan("my_input := 1"), InputNeeds::NONE);
}

#[test]
fn fields_warden_never_provides_need_nothing() {
    assert_eq!(
        scan("allow if not input.parsed_body.admin"),
        InputNeeds::NONE
    );
    assert_eq!(
        scan("allow if input.attributes.request.http.body == \"\""),
        InputNeeds::NONE
    );
}

#[test]
fn computed_keys_and_objects_used_as_values_need_everything() {
    for source in [
        "x := input",
        "x := input[k]",
        "k := concat(\"\", [\"head\", \"ers\"])\nallow if not input.attributes.request.http[k][\"x-blocked\"]",
        "allow if contains(json.marshal(input.attributes.request.http), \"evil\")",
        "allow if { some x in input.attributes.request.http; x == \"evil\" }",
        "allow if walk(input, [p, v])",
        "import input.attributes.request.http as h\nallow if h.headers.x",
        "import input\nallow if input.a",
        "f(x) := x.headers\nallow if f(input.attributes.request.http)",
        "allow if { x with input.attributes as {} }",
        "allow if object.get(input, [\"attributes\"], {})",
        "allow if input.attributes.request.http[\"he\\u0061ders\"] == 1 # ok\nx := input.attributes.source",
    ] {
        assert_eq!(scan(source), InputNeeds::ALL, "{source}");
    }
}

#[test]
fn a_key_on_the_next_line_does_not_continue_the_reference() {
    // `x := input` then a line starting with `[...]` is two statements: the whole
    // input is used as a value (found by a hostile review; it was read as `input["_"]`).
    for source in [
        "allow if {\n\tx := input\n\t[\"_\"]\n\tnot x.attributes.request.http.headers[\"x\"]\n}",
        "allow if {\r\n\tx := input\r\n\t[`_`]\r\n\tnot x.attributes.request.http.headers.x\r\n}",
        "allow if {\n\treq := input\n\t[\"GET\"][_] == req.attributes.request.http.method\n}",
        "allow if {\n\ta := input.attributes\n\t[\"_\"]\n\ta.request.time\n}",
    ] {
        assert_eq!(scan(source), InputNeeds::ALL, "{source}");
    }
    // The same for a group's parent: `http` keeps `host`, not only `headers`.
    let http = scan("allow if {\n\thttp := input.attributes.request.http\n\t[\"headers\"][0] != \"\"\n\tnot http.host == \"b\"\n}");
    assert_eq!(http, InputNeeds::ALL);
    // Written together, a key still continues the reference.
    assert!(scan("allow if input[\"attributes\"].request.http.host").host);
}

#[test]
fn an_escaped_literal_key_is_decoded() {
    let needs = scan("allow if input.attributes.request.http[\"he\\u0061ders\"].x");
    assert!(needs.headers && !needs.host);
}

#[test]
fn an_import_of_a_group_needs_that_group() {
    let needs = scan("import input.attributes.request.http.headers as h\nallow if h[k] == \"1\"");
    assert_eq!(
        needs,
        InputNeeds {
            headers: true,
            ..InputNeeds::NONE
        }
    );
}

#[test]
fn body_references_are_found_with_their_position() {
    let source = "package p\nallow if not input.parsed_body.admin\nx := input[\"attributes\"].request.http.body\ny := input.attributes.request.http.bodyless\n";
    let found = body_references(source);
    let fields: Vec<(usize, &str)> = found.iter().map(|b| (b.line, b.field.as_str())).collect();
    assert_eq!(
        fields,
        vec![
            (2, "input.parsed_body"),
            (3, "input.attributes.request.http.body")
        ]
    );
    assert_eq!(found[0].column, 14);
}

#[test]
fn call_sites_are_found_outside_comments_and_strings() {
    let source = "# walk(x)\nallow if walk(input, [p, v])\nx := \"walk(\"\ny := a.walk(1)\n";
    assert_eq!(call_sites(source, "walk"), vec![(2, 10)]);
}

#[test]
fn unlexable_sources_need_everything() {
    assert_eq!(scan("allow if \"unterminated"), InputNeeds::ALL);
}

#[test]
fn missing_fields_in_the_json_count_as_needed() {
    let needs: InputNeeds = serde_json::from_str(r#"{"headers": false}"#).unwrap();
    assert!(!needs.headers && needs.host && needs.parsed_query);
}
