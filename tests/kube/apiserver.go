package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

// runAPIServer starts etcd on the data dir, runs kube-apiserver until it returns (SIGTERM), then
// closes etcd so that its ports are free again.
func runAPIServer(args []string) int {
	fs := flag.NewFlagSet("apiserver", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "directory for etcd's data and the service account key")
	etcdPort := fs.Int("etcd-port", 0, "loopback port of etcd's client listener")
	peerPort := fs.Int("etcd-peer-port", 0, "loopback port of etcd's peer listener")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" || *etcdPort == 0 || *peerPort == 0 {
		fmt.Fprintln(os.Stderr, "apiserver: --data-dir, --etcd-port and --etcd-peer-port are required")
		return 2
	}
	etcd, err := startEtcd(filepath.Join(*dataDir, "etcd"), *etcdPort, *peerPort)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcd:", err)
		return 1
	}
	defer etcd.Close()
	key, err := serviceAccountKey(filepath.Join(*dataDir, "service-account.key"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "service account key:", err)
		return 1
	}
	command := app.NewAPIServerCommand()
	command.SetArgs(append([]string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", *etcdPort),
		"--service-account-key-file=" + key,
		"--service-account-signing-key-file=" + key,
		"--service-account-issuer=https://kubernetes.default.svc",
	}, fs.Args()...))
	return cli.Run(command)
}

// startEtcd starts a single-member etcd listening on loopback only and waits until it serves.
func startEtcd(dir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	// Test data: a crash of this process (SIGKILL) keeps what it wrote in the page cache, and the
	// tests do not simulate power loss, so fsync only costs time on a shared disk.
	cfg.UnsafeNoFsync = true
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("not ready after 60s")
	}
}

// serviceAccountKey returns the path of an RSA key for service account tokens, writing one if absent.
func serviceAccountKey(path string) (string, error) {
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	block := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, block, 0o600)
}
