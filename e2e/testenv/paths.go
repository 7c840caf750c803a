package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

const modulePath = "github.com/jobset-fleet/jobset-fleet"

var (
	rootOnce sync.Once
	rootDir  string
	rootErr  error
)

// RepoRoot is the root of the jobset-fleet checkout, found by walking up from
// the working directory (go test runs in the package directory).
func RepoRoot() string {
	rootOnce.Do(func() {
		dir, err := os.Getwd()
		if err != nil {
			rootErr = err
			return
		}
		for {
			data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			if err == nil && containsModuleLine(string(data)) {
				rootDir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				rootErr = fmt.Errorf("no go.mod for module %s above the working directory", modulePath)
				return
			}
			dir = parent
		}
	})
	if rootErr != nil {
		panic(rootErr)
	}
	return rootDir
}

func containsModuleLine(gomod string) bool {
	for _, line := range strings.Split(gomod, "\n") {
		if strings.TrimSpace(line) == "module "+modulePath {
			return true
		}
	}
	return false
}

// BinDir holds the control-plane binaries: $KUBEBUILDER_ASSETS if set, else
// the repository's bin/.
func BinDir() string {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir
	}
	return filepath.Join(RepoRoot(), "bin")
}

// Binary returns the path of a control-plane binary, or an error that tells
// how to build it.
func Binary(name string) (string, error) {
	path := filepath.Join(BinDir(), name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s not found in %s: run `make tools` (it builds the control-plane binaries from Go modules): %w", name, BinDir(), err)
	}
	return path, nil
}

// CRDPaths are the CRD directories every test cluster gets: this project's
// APIs and the cluster-inventory-api types (ClusterProfile, PlacementDecision).
func CRDPaths() []string {
	root := RepoRoot()
	return []string{
		filepath.Join(root, "config", "crd", "bases"),
		filepath.Join(root, "config", "crd", "cluster-inventory"),
	}
}
