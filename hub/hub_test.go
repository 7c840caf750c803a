package hub

import (
	"flag"
	"io"
	"strings"
	"testing"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// TestDeniedNamespacesFlagAddsToBuiltins: --denied-namespaces names extra
// namespaces; the built-in ones (system, the fleet's own, members') stay
// denied whatever it says, and --help says so.
func TestDeniedNamespacesFlagAddsToBuiltins(t *testing.T) {
	parse := func(args ...string) Options {
		t.Helper()
		o := DefaultOptions()
		fs := flag.NewFlagSet("hub", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.AddFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := parse(); len(o.DeniedNamespaces) != 0 {
		t.Errorf("default --denied-namespaces = %v, want none: the built-ins apply without it", o.DeniedNamespaces)
	}
	o := parse("--denied-namespaces=foo, batch-*", "--inventory-namespace=inventory")
	extra := o.extraDeniedNamespaces()
	for ns, want := range map[string]bool{
		"foo": true, "batch-7": true, "inventory": true,
		"kube-system": true, "jobset-fleet-system": true, "fleet-system": true, "fleet-member-m1": true,
		"team-a": false,
	} {
		if got := fleet.NamespaceDenied(ns, extra); got != want {
			t.Errorf("--denied-namespaces=foo,batch-*: namespace %s denied = %t, want %t", ns, got, want)
		}
	}

	fs := flag.NewFlagSet("hub", flag.ContinueOnError)
	o = DefaultOptions()
	o.AddFlags(fs)
	usage := fs.Lookup("denied-namespaces").Usage
	for _, builtin := range fleet.BuiltinDeniedNamespaces {
		if !strings.Contains(usage, builtin) || !strings.Contains(usage, "always") {
			t.Errorf("--denied-namespaces help %q does not say %s is always denied", usage, builtin)
		}
	}
	if n := len(parse("--denied-namespaces=").DeniedNamespaces); n != 0 {
		t.Error("--denied-namespaces= must name no extra namespace")
	}
}
