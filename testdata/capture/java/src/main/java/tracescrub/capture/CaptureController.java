package tracescrub.capture;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.data.redis.core.StringRedisTemplate;
import org.springframework.http.HttpStatus;
import org.springframework.jdbc.core.JdbcTemplate;
import org.springframework.kafka.annotation.KafkaListener;
import org.springframework.kafka.core.KafkaTemplate;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PathVariable;
import org.springframework.web.bind.annotation.RequestParam;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.server.ResponseStatusException;

/** The endpoints the driver (testdata/capture/drive.py, scenario set "java") calls. */
@RestController
public class CaptureController {
    static final String TOPIC = "person-events";
    static final String BYTES_TOPIC = "person-events-bytes";

    /** What the search accepts: 11 digits, or 6 + space or dash + 5. */
    private static final Pattern SEARCH = Pattern.compile("[0-9]{6}[ -]?[0-9]{5}");

    private final JdbcTemplate jdbc;
    private final StringRedisTemplate redis;
    private final KafkaTemplate<String, String> stringKeys;
    private final KafkaTemplate<byte[], String> bytesKeys;
    private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
    private final List<String> kafkaKeys;
    private volatile CountDownLatch consumed = new CountDownLatch(0);

    public CaptureController(JdbcTemplate jdbc, StringRedisTemplate redis, KafkaTemplate<String, String> stringKeyTemplate,
            KafkaTemplate<byte[], String> bytesKeyTemplate, @Value("${capture.kafka-keys}") String kafkaKeys) {
        this.jdbc = jdbc;
        this.redis = redis;
        this.stringKeys = stringKeyTemplate;
        this.bytesKeys = bytesKeyTemplate;
        this.kafkaKeys = Arrays.asList(kafkaKeys.split(","));
    }

    // ------------------------------------------------------------ NAIS-style probes
    // Beside the actuator endpoints (management.*): many JVM services on the
    // platform answer the kubelet on /internal/isAlive and /internal/isReady.

    @GetMapping("/internal/isAlive")
    public String isAlive() {
        return "ALIVE";
    }

    @GetMapping("/internal/isReady")
    public String isReady() {
        jdbc.queryForObject("SELECT 1", Integer.class);
        redis.hasKey("ready");
        return "READY";
    }

    // ------------------------------------------------------------ near misses

    @GetMapping({"/api/user-metrics", "/api/actuator-report", "/api/metricsfoo", "/isAliveness"})
    public Map<String, Object> nearMiss() {
        return Map.of("people", jdbc.queryForObject("SELECT count(*) FROM person", Long.class));
    }

    // ------------------------------------------------------------ person lookups

    /** Number in the path; bound SQL parameter; Redis GET/SET/HSET with the number in the key. */
    @GetMapping("/api/person/{fnr}")
    public Map<String, String> person(@PathVariable String fnr) {
        return lookup(fnr);
    }

    /** Number in the query string. */
    @GetMapping("/api/person")
    public Map<String, String> personByQuery(@RequestParam String fnr) {
        return lookup(fnr);
    }

    private Map<String, String> lookup(String fnr) {
        String name = redis.opsForValue().get("person:" + fnr);
        if (name == null) {
            List<String> rows = jdbc.queryForList("SELECT name FROM person WHERE fnr = ?", String.class, fnr);
            if (rows.isEmpty()) {
                throw new ResponseStatusException(HttpStatus.NOT_FOUND, "no such person");
            }
            name = rows.get(0);
            redis.opsForValue().set("person:" + fnr, name, Duration.ofMinutes(5));
            redis.opsForHash().put("person:" + fnr + ":meta", "source", "db");
        }
        return Map.of("fnr", fnr, "name", name);
    }

    /** Several numbers in one query parameter; SQL with the numbers inlined as literals. */
    @GetMapping("/api/persons")
    public List<Map<String, Object>> persons(@RequestParam String ids) {
        List<String> list = Arrays.stream(ids.split(",")).map(String::trim).toList();
        for (String id : list) {
            if (!SEARCH.matcher(id).matches()) {
                throw new ResponseStatusException(HttpStatus.BAD_REQUEST, "bad id");
            }
        }
        String in = list.stream().map(id -> "'" + id + "'").collect(Collectors.joining(", "));
        return jdbc.queryForList("SELECT fnr, name FROM person WHERE fnr IN (" + in + ") ORDER BY fnr");
    }

    /** Number in the query, typed with or without a space or dash; SQL with it inlined as typed. */
    @GetMapping("/api/search")
    public List<Map<String, Object>> search(@RequestParam String q) {
        if (!SEARCH.matcher(q).matches()) {
            throw new ResponseStatusException(HttpStatus.BAD_REQUEST, "not a number");
        }
        return jdbc.queryForList(
                "SELECT fnr, name FROM person WHERE fnr = replace(replace('" + q + "', ' ', ''), '-', '')");
    }

    /** An outgoing HTTP call with the number in url.full (to this service's registry endpoint). */
    @GetMapping("/api/person/{fnr}/address")
    public String address(@PathVariable String fnr, @Value("${local.server.port}") int port) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/api/registry/address/" + fnr + "?fnr=" + fnr))
                .timeout(Duration.ofSeconds(10)).GET().build();
        HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        return resp.body();
    }

    /** The "population registry" the address lookup calls. */
    @GetMapping("/api/registry/address/{fnr}")
    public Map<String, String> registry(@PathVariable String fnr, @RequestParam(name = "fnr") String unused) {
        return Map.of("street", "Testveien 1", "postcode", "0001");
    }

    /** An exception whose message carries the number (500). */
    @GetMapping("/api/person/{fnr}/consent")
    public Map<String, String> consent(@PathVariable String fnr) {
        throw new IllegalStateException("no consent on record for " + fnr);
    }

    // ------------------------------------------------------------ ordinary

    @GetMapping("/api/orders/{id}")
    public Map<String, Object> order(@PathVariable long id) {
        String cached = redis.opsForValue().get("order:" + id);
        List<Map<String, Object>> rows = jdbc.queryForList("SELECT id, amount FROM orders WHERE id = " + id);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("id", id);
        out.put("found", !rows.isEmpty());
        out.put("cached", cached != null);
        return out;
    }

    @GetMapping("/api/orders")
    public List<Map<String, Object>> orders(@RequestParam(defaultValue = "10") int limit) {
        return jdbc.queryForList("SELECT id, amount FROM orders ORDER BY id LIMIT ?", limit);
    }

    @GetMapping("/api/products")
    public List<String> products() {
        return List.of("sykkel", "ski");
    }

    // ------------------------------------------------------------ kafka

    /**
     * Publishes one record with a String key and one with a byte[] key (the
     * numbers from capture.kafka-keys), and answers once both listeners have
     * processed theirs, so their spans end before the batch is cut.
     */
    @GetMapping("/api/events/publish")
    public Map<String, Object> publish() throws Exception {
        CountDownLatch latch = new CountDownLatch(2);
        consumed = latch;
        stringKeys.send(TOPIC, kafkaKeys.get(0), "{\"event\":\"person-updated\"}").get(10, TimeUnit.SECONDS);
        bytesKeys.send(BYTES_TOPIC, kafkaKeys.get(1).getBytes(StandardCharsets.US_ASCII), "{\"event\":\"person-updated\"}")
                .get(10, TimeUnit.SECONDS);
        if (!latch.await(20, TimeUnit.SECONDS)) {
            throw new IllegalStateException("the listeners did not receive both records in time");
        }
        return Map.of("published", 2);
    }

    @KafkaListener(id = "person-events-listener", topics = TOPIC, groupId = "capture-string")
    public void onStringKey(org.apache.kafka.clients.consumer.ConsumerRecord<String, String> record) {
        redis.opsForValue().set("event:last", record.value());
        consumed.countDown();
    }

    @KafkaListener(id = "person-events-bytes-listener", topics = BYTES_TOPIC, groupId = "capture-bytes",
            containerFactory = "bytesListenerFactory")
    public void onBytesKey(org.apache.kafka.clients.consumer.ConsumerRecord<byte[], String> record) {
        redis.opsForValue().set("event:last-bytes", record.value());
        consumed.countDown();
    }
}
