// Command ociwrap is an OCI runtime that sits in front of the real runc.
//
// Some hosts (this project's CI VMs among them) run everything inside a
// capability bounding set that lacks CAP_SYS_RESOURCE. On such a host every
// container whose spec asks for that capability fails to start (runc cannot
// raise a capability outside the bounding set), and so does every container
// that asks for a negative oom_score_adj (lowering it needs CAP_SYS_RESOURCE).
// Privileged containers (kind nodes) and the kubelet's sandboxes and critical
// pods ask for both.
//
// ociwrap rewrites the request before runc sees it: on create and run it edits
// the bundle's config.json, on exec the --process file; it drops
// CAP_SYS_RESOURCE from every capability set and raises a negative oomScoreAdj
// to 0. Everything else is passed through untouched, and then the real runc is
// exec'd with the original arguments.
//
// The real runc is, in order: $OCIWRAP_RUNTIME; the file next to this binary
// named like it plus ".real"; the first "runc" on PATH that is not this binary.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const droppedCap = "CAP_SYS_RESOURCE"

// Global runc flags that take a value (so their value is not the subcommand).
var globalValueFlags = map[string]bool{
	"--log": true, "--log-format": true, "--root": true, "--criu": true, "--rootless": true,
}

func main() {
	args := os.Args[1:]
	if err := rewrite(args); err != nil {
		fmt.Fprintf(os.Stderr, "ociwrap: %v\n", err)
		os.Exit(1)
	}
	runc, err := realRuntime()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ociwrap: %v\n", err)
		os.Exit(1)
	}
	argv := append([]string{runc}, args...)
	if err := syscall.Exec(runc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "ociwrap: exec %s: %v\n", runc, err)
		os.Exit(1)
	}
}

// rewrite edits the spec file the subcommand in args will read, if any.
func rewrite(args []string) error {
	cmd, rest := subcommand(args)
	switch cmd {
	case "create", "run":
		bundle, ok := flagValue(rest, "--bundle", "-b")
		if !ok || bundle == "" {
			bundle = "."
		}
		return editFile(filepath.Join(bundle, "config.json"), fixSpec)
	case "exec":
		if p, ok := flagValue(rest, "--process", "-p"); ok && p != "" {
			return editFile(p, fixProcess)
		}
	}
	return nil
}

// subcommand returns the first non-flag argument and the arguments after it.
func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			return a, args[i+1:]
		}
		if globalValueFlags[a] {
			i++ // skip the value
		}
	}
	return "", nil
}

// flagValue finds "--name value", "--name=value", "-n value" or "-n=value".
func flagValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, n := range []string{long, short} {
			if a == n && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

func editFile(path string, fix func(map[string]any) bool) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // let runc report it
		}
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep 64-bit values (memory limits, ids) exact
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	if !fix(doc) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".ociwrap"
	if err := os.WriteFile(tmp, out, fi.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// fixSpec edits a runtime spec (config.json); it reports whether it changed.
func fixSpec(spec map[string]any) bool {
	proc, ok := spec["process"].(map[string]any)
	if !ok {
		return false
	}
	return fixProcess(proc)
}

// fixProcess edits a process object (spec.process, or runc exec's --process).
func fixProcess(proc map[string]any) bool {
	changed := false
	if caps, ok := proc["capabilities"].(map[string]any); ok {
		for set, v := range caps {
			list, ok := v.([]any)
			if !ok {
				continue
			}
			kept := list[:0:0]
			for _, c := range list {
				if s, _ := c.(string); s == droppedCap {
					changed = true
					continue
				}
				kept = append(kept, c)
			}
			caps[set] = kept
		}
	}
	if n, ok := proc["oomScoreAdj"].(json.Number); ok {
		if v, err := n.Int64(); err == nil && v < 0 {
			proc["oomScoreAdj"] = json.Number("0")
			changed = true
		}
	}
	return changed
}

func realRuntime() (string, error) {
	if p := os.Getenv("OCIWRAP_RUNTIME"); p != "" {
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if p := self + ".real"; isExecutable(p) {
		return p, nil
	}
	selfInfo, err := os.Stat(self)
	if err != nil {
		return "", err
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "runc")
		fi, err := os.Stat(p)
		if err != nil || os.SameFile(fi, selfInfo) || !isExecutable(p) {
			continue
		}
		return p, nil
	}
	// dockerd and containerd may run with a short PATH.
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/bin/runc"} {
		if fi, err := os.Stat(p); err == nil && !os.SameFile(fi, selfInfo) && isExecutable(p) {
			return p, nil
		}
	}
	return "", errors.New("no real runc found (set OCIWRAP_RUNTIME)")
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
