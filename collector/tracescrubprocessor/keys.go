package tracescrubprocessor

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// minKeyBytes is the shortest pseudonym key; the component checks it too.
const minKeyBytes = 32

// resolveKey reads the pseudonym key a config names (`mask.hmac.key_file`,
// relative to base, the config file's directory; or `mask.hmac.key_env`)
// and passes it to the component as `mask.hmac.key_hex`, the key only hosts
// set: the component imports nothing, so it cannot read either itself. A key
// file loses one trailing newline (`echo` writes one). Errors name the key
// path and the file or variable, never the key. As `tracescrub` does.
func resolveKey(doc any, base string) error {
	root, _ := doc.(map[string]any)
	mask, _ := root["mask"].(map[string]any)
	hmac, ok := mask["hmac"].(map[string]any)
	if !ok {
		return nil
	}
	if _, set := hmac["key_hex"]; set {
		return errors.New("config key `mask.hmac.key_hex` is set only by the host, from the key it reads; name the key's file (mask.hmac.key_file) or environment variable (mask.hmac.key_env) instead, and keep the key out of the config")
	}
	file, hasFile := hmac["key_file"]
	env, hasEnv := hmac["key_env"]
	delete(hmac, "key_file")
	delete(hmac, "key_env")
	var key []byte
	switch {
	case !hasFile && !hasEnv:
		return nil
	case hasFile && hasEnv:
		return errors.New("config key `mask.hmac`: give key_file or key_env, not both")
	case hasFile:
		name, ok := file.(string)
		if !ok {
			return errors.New("config key `mask.hmac.key_file`: expected a file name (a string)")
		}
		name = keyPath(name, base)
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("config key `mask.hmac.key_file`: cannot read %s: %v", name, errKind(err))
		}
		if bytes.HasSuffix(b, []byte("\n")) {
			b = bytes.TrimSuffix(bytes.TrimSuffix(b, []byte("\n")), []byte("\r"))
		}
		if err := checkKeyLen(b, fmt.Sprintf("`mask.hmac.key_file` (%s)", name)); err != nil {
			return err
		}
		key = b
	default:
		name, ok := env.(string)
		if !ok {
			return errors.New("config key `mask.hmac.key_env`: expected a variable name (a string)")
		}
		v, set := os.LookupEnv(name)
		if !set {
			return fmt.Errorf("config key `mask.hmac.key_env`: the environment variable %s is not set", name)
		}
		if err := checkKeyLen([]byte(v), fmt.Sprintf("`mask.hmac.key_env` (%s)", name)); err != nil {
			return err
		}
		key = []byte(v)
	}
	hmac["key_hex"] = hex.EncodeToString(key)
	return nil
}

// keyPath is a key_file name, relative to base unless absolute.
func keyPath(name, base string) string {
	if !filepath.IsAbs(name) && base != "" {
		return filepath.Join(base, name)
	}
	return name
}

// keyFileHash hashes the content of the key file a config document names,
// so that the watch reloads on a new key alone; "" when it names none. A
// file that cannot be read hashes as its error (the reload then says why).
// It is kept apart from the config hash, which is logged: no logged hash
// depends on the key.
func keyFileHash(doc any, base string) string {
	root, _ := doc.(map[string]any)
	mask, _ := root["mask"].(map[string]any)
	hmac, _ := mask["hmac"].(map[string]any)
	name, ok := hmac["key_file"].(string)
	if !ok {
		return ""
	}
	b, err := os.ReadFile(keyPath(name, base))
	if err != nil {
		return hash([]byte("unreadable: " + errKind(err)))
	}
	return hash(b)
}

func checkKeyLen(key []byte, what string) error {
	if len(key) < minKeyBytes {
		return fmt.Errorf("config key %s: the key is %d bytes; a pseudonym key needs at least %d (e.g. `head -c 32 /dev/urandom > FILE`)", what, len(key), minKeyBytes)
	}
	return nil
}
