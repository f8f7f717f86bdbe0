package raftstore

import (
	"slices"
	"testing"

	"github.com/sluice-gw/sluice/model"
)

// A project's sorted subscription list is built once and shared until the project's set changes:
// every change must show in the next list, and other projects' lists must be unaffected.
func TestProjectSubscriptionsFollowChanges(t *testing.T) {
	c := newCatalog()
	ids := func(pid string) []string {
		var out []string
		for _, s := range c.projectSubscriptions(pid) {
			out = append(out, s.UID)
		}
		return out
	}
	put := func(pid, sid, eid string) {
		c.putSubscription(&model.Subscription{UID: sid, ProjectID: pid, EndpointID: eid})
	}
	put("p", "s2", "e1")
	put("p", "s1", "e2")
	put("q", "s9", "e9")
	steps := []struct {
		name   string
		change func()
		want   []string
	}{
		{"built sorted", func() {}, []string{"s1", "s2"}},
		{"a subscription added", func() { put("p", "s3", "e1") }, []string{"s1", "s2", "s3"}},
		{"one replaced", func() { put("p", "s1", "e3") }, []string{"s1", "s2", "s3"}},
		{"one deleted", func() { c.deleteSubscription("p", "s2") }, []string{"s1", "s3"}},
		{"its endpoint deleted", func() { c.deleteEndpoint("p", "e1") }, []string{"s1"}},
		{"the project deleted", func() { c.deleteProject("p") }, nil},
		{"recreated", func() { put("p", "s5", "e5") }, []string{"s5"}},
	}
	for _, st := range steps {
		st.change()
		if got := ids("p"); !slices.Equal(got, st.want) {
			t.Fatalf("%s: subscriptions %v, want %v", st.name, got, st.want)
		}
		if got := ids("q"); !slices.Equal(got, []string{"s9"}) {
			t.Fatalf("%s: the other project's subscriptions became %v", st.name, got)
		}
	}
	if a, b := c.projectSubscriptions("p"), c.projectSubscriptions("p"); &a[0] != &b[0] {
		t.Errorf("an unchanged project's list was rebuilt")
	}
	if got := c.projectSubscriptions("p")[0].EndpointID; got != "e5" {
		t.Errorf("the list holds endpoint %s, want e5", got)
	}
}
