package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelp: the hub's --help lists its own flags in their own section,
// apart from klog's, and the binary has completion and version.
func TestHelp(t *testing.T) {
	run := func(args ...string) string {
		t.Helper()
		cmd := command()
		var out bytes.Buffer
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	help := run("--help")
	hubFlags, rest, ok := strings.Cut(help, "\nKube client flags:\n")
	_, hubFlags, _ = strings.Cut(hubFlags, "\nHub flags:\n")
	if !ok || !strings.Contains(hubFlags, "--placement-policy") || !strings.Contains(hubFlags, "--member-lost-timeout") || strings.Contains(hubFlags, "--kubeconfig") {
		t.Errorf("--help: no Hub section with the hub's own flags only:\n%s", help)
	}
	if logging, _, _ := strings.Cut(rest[strings.Index(rest, "\nLogging flags:\n")+1:], "\nGeneric flags:\n"); !strings.Contains(logging, "-v, --v") || strings.Contains(hubFlags, "--vmodule") {
		t.Errorf("--help: klog's flags not in their own section:\n%s", help)
	}
	if !strings.Contains(run("completion", "bash"), "jobset-fleet-hub") {
		t.Error("completion bash printed no script")
	}
	if v := run("--version"); !strings.HasPrefix(v, "jobset-fleet-hub\nversion:") {
		t.Errorf("--version printed %q", v)
	}
}
