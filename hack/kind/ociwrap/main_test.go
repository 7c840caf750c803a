package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRewriteBundle(t *testing.T) {
	dir := t.TempDir()
	spec := `{"process":{"oomScoreAdj":-998,"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"]}},"linux":{"resources":{"memory":{"limit":9223372036854771712}}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewrite([]string{"--root", "/run/runc", "--log", "x.log", "create", "--bundle", dir, "id"}); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	got := string(out)
	if strings.Contains(got, "CAP_SYS_RESOURCE") || !strings.Contains(got, "CAP_CHOWN") {
		t.Errorf("capabilities not fixed: %s", got)
	}
	if !strings.Contains(got, `"oomScoreAdj":0`) {
		t.Errorf("oomScoreAdj not clamped: %s", got)
	}
	if !strings.Contains(got, "9223372036854771712") {
		t.Errorf("large integer not preserved: %s", got)
	}
}

func TestRewriteExecProcess(t *testing.T) {
	p := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(p, []byte(`{"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_NET_ADMIN"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewrite([]string{"exec", "--process=" + p, "--detach", "id"}); err != nil {
		t.Fatal(err)
	}
	var doc map[string]map[string][]string
	raw, _ := os.ReadFile(p)
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if b := doc["capabilities"]["bounding"]; len(b) != 1 || b[0] != "CAP_NET_ADMIN" {
		t.Errorf("bounding = %v", b)
	}
}

func TestOtherCommandsUntouched(t *testing.T) {
	if cmd, _ := subcommand([]string{"--root", "/x", "state", "id"}); cmd != "state" {
		t.Errorf("subcommand = %q", cmd)
	}
	if err := rewrite([]string{"delete", "id"}); err != nil {
		t.Fatal(err)
	}
}
