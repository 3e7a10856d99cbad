//! Black-box test of catching up: a member of a federation of four real `allmende` processes
//! is killed with SIGKILL while the others publish and update, and after its restart its
//! digest and search converge on everything it missed.

use std::time::{Duration, Instant};

use allmende_e2e::member::{
    Member, SOON, form, wait_digests_equal, wait_found, wait_fully_connected,
};
use allmende_e2e::poll;

/// (b) Four nodes; one is killed with SIGKILL while the others publish and update; after its
/// restart every digest converges within a deadline and its search shows the new entries.
#[test]
fn a_killed_node_catches_up_after_restart() {
    let mut members = vec![
        Member::start(2, 2, "Stadt Münster"),
        Member::start(2, 3, "Kreis Steinfurt"),
        Member::start(2, 4, "Kreis Coesfeld"),
        Member::start(2, 5, "Kreis Borken"),
    ];
    {
        let all: Vec<&Member> = members.iter().collect();
        form(&all, "muensterland");
        wait_fully_connected(&all);
        members[0].publish("radwege", "Radwege im Stadtgebiet", "TRAN", "Rad");
        members[3].publish("schulen", "Schulstandorte", "EDUC", "Schule");
        wait_digests_equal(&all, SOON);
        wait_found(&members[3], "radweg", "radwege");
    }

    let victim = members.pop().expect("four members");
    let Member {
        node: mut victim_node,
        name: victim_name,
        peer: victim_peer,
    } = victim;
    victim_node.stop(libc::SIGKILL, Duration::from_secs(10));
    for m in &members {
        poll(
            &format!("{} notices {victim_name} is gone", m.name),
            SOON,
            || (!m.connected().contains(&victim_peer)).then_some(()),
            || format!("{:?}", m.connected()),
        );
    }

    // While it is down: new datasets on two nodes, and a metadata change on a published one
    // (which re-publishes it as an update).
    members[1].publish(
        "baustellen",
        "Baustellen auf Kreisstraßen",
        "TRAN",
        "Baustelle",
    );
    members[2].publish(
        "hochwasser",
        "Hochwassergefahrenkarten",
        "ENVI",
        "Hochwasser",
    );
    members[0].node.ok(&[
        "dataset",
        "update",
        "radwege",
        "--title",
        "Radwege und Fahrradstraßen im Stadtgebiet",
    ]);
    for i in 0..5 {
        members[1].publish(
            &format!("messstelle_{i}"),
            &format!("Pegelmessstelle {i}"),
            "ENVI",
            "Pegel",
        );
    }
    let up: Vec<&Member> = members.iter().collect();
    let (before, _) = wait_digests_equal(&up, SOON);

    victim_node.start();
    let victim = Member {
        node: victim_node,
        name: victim_name,
        peer: victim_peer,
    };
    let restarted = Instant::now();
    let mut all: Vec<&Member> = members.iter().collect();
    all.push(&victim);
    let (after, took) = wait_digests_equal(&all, SOON);
    eprintln!("restarted node converged {took:?} after its restart");
    assert_eq!(before, after, "nothing changed meanwhile");
    assert!(restarted.elapsed() < SOON);
    // The search index follows the log a commit later than the digest does.
    wait_found(&victim, "fahrradstraße", "radwege");
    wait_found(&victim, "baustelle", "baustellen");
    wait_found(&victim, "hochwasser", "hochwasser");
    wait_found(&victim, "pegelmessstelle", "messstelle_4");
    assert_eq!(victim.find("fahrradstraße"), vec!["radwege"]);
    assert_eq!(victim.search(&[("q", "pegelmessstelle")])["total"], 5);
    assert_eq!(victim.search(&[])["total"], 9);
    wait_fully_connected(&all);
}
