//! docs/CLI.md against the clap definitions it documents: every visible `peer` command has its
//! row in the commands table, with each of its visible aliases and long options; every row
//! names a command that exists; every global option has its row. For `tracker-node`, whose
//! definitions live in its binary, the commands its `--help` lists are the ones the table has.
//! A command added, renamed or given a flag without its line in the reference fails here.

use std::collections::BTreeSet;

use clap::CommandFactory;

fn cli_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CLI.md");
    std::fs::read_to_string(path).expect("docs/CLI.md")
}

/// The table rows (lines starting with "| `<bin> ") of the section that starts at `heading`.
fn rows<'a>(md: &'a str, heading: &str, bin: &str) -> Vec<&'a str> {
    let start = md.find(heading).unwrap_or_else(|| panic!("docs/CLI.md has {heading:?}"));
    let prefix = format!("| `{bin} ");
    md[start..].lines().skip(1).take_while(|l| !l.starts_with("## ")).filter(|l| l.starts_with(&prefix)).collect()
}

/// The command a row documents: the words after the binary up to the first argument or flag.
fn row_command(row: &str, bin: &str) -> String {
    let cell = row.trim_start_matches("| `").split('`').next().unwrap_or_default();
    let words: Vec<&str> = cell
        .trim_start_matches(bin)
        .split_whitespace()
        .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    words.join(" ")
}

#[test]
fn every_peer_command_alias_and_flag_is_in_the_reference() {
    let md = cli_md();
    let table = rows(&md, "### Commands", "peer");
    let cli = peer::cli::Cli::command();
    let mut documented: BTreeSet<String> = table.iter().map(|r| row_command(r, "peer")).collect();
    let mut missing = Vec::new();
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_string();
        let Some(row) = table.iter().find(|r| row_command(r, "peer") == name) else {
            missing.push(format!("no row for `peer {name}`"));
            continue;
        };
        documented.remove(&name);
        for alias in sub.get_visible_aliases().chain(sub.get_aliases()) {
            if !row.contains(&format!("`{alias}`")) {
                missing.push(format!("`peer {name}`'s row lacks its alias `{alias}`"));
            }
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set() && !a.is_global_set()) {
            let Some(long) = arg.get_long() else { continue };
            // A flag is documented in the row or in the command's own section below.
            let section = md.find(&format!("#### peer {name}")).map(|i| &md[i..]).unwrap_or_default();
            let section = section.split("\n#### ").next().unwrap_or_default();
            let flag = format!("--{long}");
            if !row.contains(&flag) && !section.contains(&flag) {
                missing.push(format!("`peer {name}` takes {flag}, which neither its row nor its section names"));
            }
        }
    }
    for stale in &documented {
        missing.push(format!("the table documents `peer {stale}`, which is no command"));
    }
    let globals = md.find("### Global options").map(|i| &md[i..]).unwrap_or_default();
    for arg in cli.get_arguments().filter(|a| a.is_global_set() && !a.is_hide_set()) {
        if let Some(long) = arg.get_long() {
            if !globals.split("### Commands").next().unwrap_or_default().contains(&format!("`--{long}")) {
                missing.push(format!("the global option --{long} has no row"));
            }
        }
    }
    assert!(missing.is_empty(), "docs/CLI.md is behind the CLI:\n{}", missing.join("\n"));
}

#[test]
fn tracker_node_commands_in_its_help_are_the_reference_table() {
    let md = cli_md();
    let table = rows(&md, "## tracker-node", "tracker-node");
    let documented: BTreeSet<String> =
        table.iter().filter_map(|r| row_command(r, "tracker-node").split(' ').next().map(str::to_string)).collect();
    let out = testkit::tracker_node(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let listed: BTreeSet<String> = help
        .split("Commands:")
        .nth(1)
        .expect("--help lists its commands")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert_eq!(listed, documented, "tracker-node --help's commands (left) against docs/CLI.md's table (right)");
}
