package placement

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// withQueue gives m a Kueue whose LocalQueue team/team-a feeds
// ClusterQueue team-a of one resource group with the flavors' free quota.
func withQueue(m inventory.Member, flavors ...fleet.KueueFlavorFree) inventory.Member {
	m.Kueue = &fleet.KueueQuotas{
		LocalQueues:   []fleet.KueueLocalQueue{{Namespace: "team", Name: "team-a", ClusterQueue: "team-a"}},
		ClusterQueues: []fleet.KueueClusterQueue{{Name: "team-a", ResourceGroups: []fleet.KueueResourceGroup{{Flavors: flavors}}}},
	}
	return m
}

func flavor(name string, kv ...string) fleet.KueueFlavorFree {
	return fleet.KueueFlavorFree{Name: name, Free: rl(kv...)}
}

func TestQueueShortfall(t *testing.T) {
	queued := jobSet(1, 4, "2").Label(fleet.KueueQueueNameLabel, "team-a").Obj() // 8 cpu
	plain := jobSet(1, 4, "2").Obj()
	cases := []struct {
		name string
		m    inventory.Member
		js   bool // queued, else plain
		want string
		// demand: sent to the member's LocalQueues, not in its figures.
		demand map[string]corev1.ResourceList
	}{
		{"no queue name: Kueue plays no part", withQueue(member("m", "16", "16"), flavor("default", "cpu", "0")), false, "", nil},
		{"a member without Kueue: the label is inert there", member("m", "16", "16"), true, "", nil},
		{"room in the queue", withQueue(member("m", "16", "16"), flavor("default", "cpu", "8")), true, "", nil},
		{"too little free", withQueue(member("m", "16", "16"), flavor("default", "cpu", "2")), true, "ClusterQueue team-a has 2 cpu free, needs 8", nil},
		{"one of two flavors has room", withQueue(member("m", "16", "16"), flavor("small", "cpu", "2"), flavor("big", "cpu", "10")), true, "", nil},
		{"no flavor has room: the closest is named", withQueue(member("m", "16", "16"), flavor("small", "cpu", "2"), flavor("big", "cpu", "6")), true,
			"ClusterQueue team-a has 6 cpu free, needs 8 (flavor big)", nil},
		{"a requested resource the queue does not cover", withQueue(member("m", "16", "16"), flavor("default", "memory", "1Ti")), true,
			"ClusterQueue team-a has no quota for cpu", nil},
		{"no such LocalQueue", func() inventory.Member {
			m := withQueue(member("m", "16", "16"), flavor("default", "cpu", "8"))
			m.Kueue.LocalQueues[0].Name = "team-b"
			return m
		}(), true, "its Kueue has no LocalQueue team/team-a", nil},
		{"no such LocalQueue, but the report left some out: unknown", func() inventory.Member {
			m := withQueue(member("m", "16", "16"), flavor("default", "cpu", "8"))
			m.Kueue.LocalQueues[0].Name, m.Kueue.Omitted = "team-b", 3
			return m
		}(), true, "", nil},
		{"inactive ClusterQueue", func() inventory.Member {
			m := withQueue(member("m", "16", "16"), flavor("default", "cpu", "8"))
			m.Kueue.ClusterQueues[0].Inactive = true
			return m
		}(), true, "ClusterQueue team-a is not active", nil},
		{"room, but as much sent there ahead of it", withQueue(member("m", "16", "16"), flavor("default", "cpu", "8")), true,
			"ClusterQueue team-a has 8 cpu free, needs 8 after 2 for JobSets dispatched there before it",
			map[string]corev1.ResourceList{"team/team-a": rl("cpu", "2")}},
		{"room after what was sent ahead", withQueue(member("m", "16", "16"), flavor("default", "cpu", "10")), true, "",
			map[string]corev1.ResourceList{"team/team-a": rl("cpu", "2")}},
		{"sent to a LocalQueue of another ClusterQueue: not counted", func() inventory.Member {
			m := withQueue(member("m", "16", "16"), flavor("default", "cpu", "8"))
			m.Kueue.LocalQueues = append(m.Kueue.LocalQueues, fleet.KueueLocalQueue{Namespace: "team", Name: "team-b", ClusterQueue: "team-b"})
			m.Kueue.ClusterQueues = append(m.Kueue.ClusterQueues, fleet.KueueClusterQueue{Name: "team-b"})
			return m
		}(), true, "", map[string]corev1.ResourceList{"team/team-b": rl("cpu", "8")}},
		{"sent to another LocalQueue of the same ClusterQueue: counted", func() inventory.Member {
			m := withQueue(member("m", "16", "16"), flavor("default", "cpu", "8"))
			m.Kueue.LocalQueues = append(m.Kueue.LocalQueues, fleet.KueueLocalQueue{Namespace: "other", Name: "team-a", ClusterQueue: "team-a"})
			return m
		}(), true, "ClusterQueue team-a has 8 cpu free, needs 8 after 1 for JobSets dispatched there before it",
			map[string]corev1.ResourceList{"other/team-a": rl("cpu", "1")}},
		{"missing ClusterQueue", func() inventory.Member {
			m := withQueue(member("m", "16", "16"), flavor("default", "cpu", "8"))
			m.Kueue.ClusterQueues[0].Name = "other"
			return m
		}(), true, "its Kueue has no ClusterQueue team-a (of LocalQueue team/team-a)", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := plain
			if tc.js {
				js = queued
			}
			if got := QueueShortfall(tc.m, js, Requests(&js.Spec), tc.demand); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestPlacePrefersAQueueWithRoom: the member whose queue can admit the
// JobSet now wins over one with more free nodes whose queue cannot; with
// no queue that can, the JobSet is still placed, by the policy.
func TestPlacePrefersAQueueWithRoom(t *testing.T) {
	js := jobSet(1, 4, "2").Label(fleet.KueueQueueNameLabel, "team-a").Obj()
	full := withQueue(member("a-full", "64", "64"), flavor("default", "cpu", "2"))
	room := withQueue(member("b-room", "16", "12"), flavor("default", "cpu", "8"))
	res, err := Place(Request{JobSet: js, Members: []inventory.Member{full, room}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cluster != "b-room" {
		t.Fatalf("chose %q: %s", res.Cluster, res.Explain())
	}
	if why := res.Explain(); !strings.Contains(why, "a-full: fits;") || !strings.Contains(why, "ranked after members whose Kueue can admit it now: ClusterQueue team-a has 2 cpu free, needs 8") {
		t.Errorf("the verdicts do not say why a-full was ranked after: %s", why)
	}

	// Neither queue has room: still placed, by the policy (spread: most free).
	room.Kueue.ClusterQueues[0].ResourceGroups[0].Flavors[0].Free = rl("cpu", "4")
	res, err = Place(Request{JobSet: js, Members: []inventory.Member{full, room}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Cluster != "a-full" {
		t.Errorf("chose %q, want a-full by spread: %s", res.Cluster, res.Explain())
	}
}
