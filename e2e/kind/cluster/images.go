package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Images are the Docker images hack/kind/node-image.sh built or found.
type Images struct {
	Node       string // kind node image (kindest/node or jobset-fleet/kind-node)
	Netd       string // pod network DaemonSet
	TestServer string // tiny HTTP server of this package's test
}

// RepoRoot is the checkout this package lives in (found from the working
// directory upwards: go test runs in the package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "kind", "node-image.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no hack/kind/node-image.sh above the working directory")
		}
		dir = parent
	}
}

// BuiltImages reads what the last run of hack/kind/node-image.sh reported
// (bin/kind/images.env).
func BuiltImages() (Images, error) {
	root, err := RepoRoot()
	if err != nil {
		return Images{}, err
	}
	path := filepath.Join(root, "bin", "kind", "images.env")
	f, err := os.Open(path)
	if err != nil {
		return Images{}, fmt.Errorf("%w (run `make kind-node-image` first)", err)
	}
	defer f.Close()
	var imgs Images
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "NODE_IMAGE":
			imgs.Node = v
		case "NETD_IMAGE":
			imgs.Netd = v
		case "TESTSERVER_IMAGE":
			imgs.TestServer = v
		}
	}
	if imgs.Node == "" || imgs.Netd == "" {
		return Images{}, fmt.Errorf("%s is incomplete (rerun `make kind-node-image`)", path)
	}
	return imgs, sc.Err()
}

// EnsureImages runs hack/kind/node-image.sh (seconds when nothing changed;
// it installs packages and starts dockerd only with E2E_SETUP_HOST=1, and
// otherwise fails on a host that lacks them) and returns what it reported.
// Its progress goes to log.
func EnsureImages(ctx context.Context, log io.Writer) (Images, error) {
	root, err := RepoRoot()
	if err != nil {
		return Images{}, err
	}
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "kind", "node-image.sh"))
	cmd.Dir = root
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Run(); err != nil {
		return Images{}, fmt.Errorf("hack/kind/node-image.sh: %w", err)
	}
	return BuiltImages()
}
