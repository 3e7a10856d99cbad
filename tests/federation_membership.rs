//! Black-box tests of federation membership with real `allmende` processes: a member removed
//! by majority is disconnected and its entries hidden, a member added by majority receives the
//! roster and the whole catalog, and a node outside the roster never connects, although it holds
//! a validly signed roster naming the members.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use allmende_e2e::member::{
    Member, SOON, form, slugs, wait_digests_equal, wait_found, wait_fully_connected,
};
use allmende_e2e::{create_roster, poll};

/// (c) A majority signs the removal of a member: it is disconnected everywhere and its entries
/// disappear from the others' search, while it keeps trying to reach them.
#[test]
fn a_member_removed_by_majority_is_disconnected_and_hidden() {
    let a = Member::start(3, 2, "Stadt Münster");
    let b = Member::start(3, 3, "Kreis Steinfurt");
    let c = Member::start(3, 4, "Kreis Coesfeld");
    let d = Member::start(3, 5, "Kreis Borken");
    let all = [&a, &b, &c, &d];
    form(&all, "muensterland");
    wait_fully_connected(&all);
    d.publish("windkraft", "Windkraftanlagen im Kreis", "ENER", "Wind");
    a.publish(
        "parkplaetze",
        "Parkplätze in der Altstadt",
        "TRAN",
        "Parken",
    );
    for m in [&a, &b, &c] {
        wait_found(m, "windkraftanlage", "windkraft");
    }
    wait_digests_equal(&all, SOON);

    // a proposes, b signs: 2 of 4 is not yet the majority (3), so nothing changes.
    let file = a.dir().join("remove.roster");
    let file_arg = file.to_str().expect("utf-8");
    let out = a
        .node
        .ok(&["federation", "propose-remove", &d.peer, "-o", file_arg]);
    assert!(out.contains("version 2: 3 members, 1 signatures"), "{out}");
    b.node.ok(&["federation", "sign", file_arg]);
    assert_eq!(a.roster_version(), 1);
    assert!(a.find("windkraftanlage").contains(&"windkraft".to_owned()));
    // The third signature makes it valid; it is installed by the signer and gossiped.
    let out = c.node.ok(&["federation", "sign", file_arg]);
    assert!(out.contains("installed"), "{out}");
    let rest = [&a, &b, &c];
    for m in rest {
        poll(
            &format!("{} installs roster version 2", m.name),
            SOON,
            || (m.roster_version() == 2).then_some(()),
            || m.status()["roster"].to_string(),
        );
    }
    wait_fully_connected(&rest);
    for m in rest {
        poll(
            &format!("{}: the removed member's entries are hidden", m.name),
            SOON,
            || m.find("windkraftanlage").is_empty().then_some(()),
            || format!("{:?}", m.find("windkraftanlage")),
        );
        assert!(!m.connected().contains(&d.peer));
        assert_eq!(
            m.search(&[("publisher", d.peer.as_str())])["total"],
            0,
            "{}",
            m.name
        );
        assert_eq!(m.find("parkplatz"), vec!["parkplaetze"]);
    }
    // Whatever d makes of it (it may have heard of version 2 before it was cut off, and then
    // knows it is no longer a member), for many sync rounds none of the others lets it in, and
    // nothing it publishes reaches them.
    eprintln!(
        "removed member: roster version {}, member {}",
        d.roster_version(),
        d.status()["member"]
    );
    d.publish("solar", "Solarpotenzialkataster", "ENER", "Solar");
    a.publish("baeume", "Baumkataster", "ENVI", "Baum");
    for m in [&b, &c] {
        wait_found(m, "baumkataster", "baeume");
    }
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        for m in rest {
            assert!(
                !m.connected().contains(&d.peer),
                "{} lets the removed member connect",
                m.name
            );
            assert!(m.find("solarpotenzialkataster").is_empty(), "{}", m.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_digests_equal(&rest, SOON);
}

/// (c, second half) A member added by a signed proposal receives the roster and the whole
/// catalog, and its own entries reach the others.
#[test]
fn a_member_added_by_majority_receives_roster_and_catalog() {
    let a = Member::start(4, 2, "Stadt Münster");
    let b = Member::start(4, 3, "Kreis Steinfurt");
    let c = Member::start(4, 4, "Kreis Coesfeld");
    let all = [&a, &b, &c];
    form(&all, "muensterland");
    wait_fully_connected(&all);
    a.publish("radwege", "Radwege im Stadtgebiet", "TRAN", "Rad");
    b.publish("schulen", "Schulstandorte", "EDUC", "Schule");
    c.publish("kitas", "Kindertagesstätten", "EDUC", "Kita");
    wait_digests_equal(&all, SOON);

    let e = Member::start(4, 5, "Kreis Warendorf");
    let card = e.card();
    let file = a.dir().join("add.roster");
    let file_arg = file.to_str().expect("utf-8");
    a.node.ok(&[
        "federation",
        "propose-add",
        "--card",
        card.to_str().expect("utf-8"),
        "-o",
        file_arg,
    ]);
    let out = b.node.ok(&["federation", "sign", file_arg]);
    assert!(out.contains("installed"), "{out}");
    // The new member installs the signed successor it was handed.
    let applied = e.node.cli(&["federation", "apply", file_arg]);
    assert!(
        applied.status.success(),
        "a new member cannot install the roster that adds it: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let with_e = [&a, &b, &c, &e];
    for m in with_e {
        poll(
            &format!("{} installs roster version 2", m.name),
            SOON,
            || (m.roster_version() == 2).then_some(()),
            || m.status()["roster"].to_string(),
        );
    }
    wait_fully_connected(&with_e);
    wait_digests_equal(&with_e, SOON);
    // The search index follows the log a commit later than the digest does.
    poll(
        "the new member's search shows the whole catalog",
        SOON,
        || (slugs(&e.search(&[])) == ["kitas", "radwege", "schulen"]).then_some(()),
        || e.search(&[]).to_string(),
    );
    e.publish("freibaeder", "Freibäder", "SOCI", "Schwimmen");
    for m in all {
        wait_found(m, "freibad", "freibaeder");
    }
}

/// (d) A node outside the federation's roster cannot connect, although it holds a roster
/// validly signed by all members that lists their addresses and keeps dialing them: the members
/// never show it as connected, and what it publishes never reaches them.
#[test]
fn a_node_outside_the_roster_cannot_connect() {
    let a = Member::start(5, 2, "Stadt Münster");
    let b = Member::start(5, 3, "Kreis Steinfurt");
    let c = Member::start(5, 4, "Kreis Coesfeld");
    let x = Member::start(5, 9, "Unbekannt");
    // First a founding roster with x that a, b and c sign but x does not (yet)...
    let cards: Vec<PathBuf> = [&a, &b, &c, &x].iter().map(|m| m.card()).collect();
    let with_x = a.dir().join("with-x.roster");
    let with_x_arg = with_x.to_str().expect("utf-8");
    create_roster(&a.node, &cards[1..], "muensterland", &with_x);
    b.node.ok(&["federation", "sign", with_x_arg]);
    c.node.ok(&["federation", "sign", with_x_arg]);
    // ...then the federation a, b and c actually found, without x...
    let all = [&a, &b, &c];
    form(&all, "muensterland");
    // ...and finally x signs and installs the first one: a genuine founding roster of the same
    // federation id, naming a, b and c with their addresses, so x dials them.
    x.node.ok(&["federation", "sign", with_x_arg]);
    x.node.ok(&["federation", "apply", with_x_arg]);
    assert_eq!(x.roster_version(), 1);
    wait_fully_connected(&all);

    x.publish(
        "gefaelscht",
        "Gefälschte Haushaltsdaten",
        "GOVE",
        "Haushalt",
    );
    a.publish("haushalt", "Haushaltsplan der Stadt", "GOVE", "Haushalt");
    for m in [&b, &c] {
        wait_found(m, "haushaltsplan", "haushalt");
    }
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        for m in all {
            assert!(
                !m.connected().contains(&x.peer),
                "{} lets the outsider connect",
                m.name
            );
            assert_eq!(m.find("haushalt"), vec!["haushalt"], "{}", m.name);
            let publishers = m.status()["publishers"].to_string();
            assert!(!publishers.contains(&x.peer), "{}: {publishers}", m.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_digests_equal(&all, SOON);
    // x only ever sees its own entry.
    assert_eq!(x.find("haushalt"), vec!["gefaelscht"]);
}
